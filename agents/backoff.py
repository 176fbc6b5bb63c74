"""Reconnect delays: exponential backoff with full jitter, capped (pure).

Attempt 0 waits up to ``base``, attempt n up to ``min(cap, base * 2**n)``; the random draw
spreads 1,000 mailboxes of a provider that just came back over the whole window instead
of reconnecting them in lockstep. ``rand`` is injected so tests are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay policy: ``delay(attempt, rand)`` with ``rand()`` uniform in [0, 1)."""

    base: float = 1.0
    cap: float = 300.0
    floor: float = 0.05

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the wait before reconnect number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # 2**64 is far above any cap; clamping the exponent avoids float overflow.
        return min(self.cap, self.base * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """Full jitter: uniform in [floor, ceiling(attempt)]."""
        ceiling = self.ceiling(attempt)
        return max(self.floor, min(ceiling, ceiling * rand()))
