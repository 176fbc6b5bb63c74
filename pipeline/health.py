"""Liveness and readiness answered from the event loop, for Kubernetes probes.

``/metrics`` is served by a thread (``prometheus_client``): it keeps answering while the
event loop that does the work is hung, so it proves nothing. The checks here run *on*
the event loop: a probe that gets an answer at all shows the loop turns, and the
:class:`Heartbeat` shows it turned recently (a loop starved by a busy coroutine answers
late, then the heartbeat is stale).

* ``GET /livez``  - 200 while the process should keep running; 503: restart it.
* ``GET /readyz`` - 200 while it does its job; 503: it cannot (yet).

Each answers one JSON object (``{"ok": ..., ...details}``). The agent serves them with
:func:`serve_health` on its own port; the worker adds them to faust's web server
(``pipeline.streams.health``), which runs on the same loop as its processors.

Verdicts are pure functions of what is passed in (samples of the registry, offsets), so
the decisions are tested without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

__all__ = [
    "Heartbeat",
    "ProgressWatch",
    "Verdict",
    "agent_liveness",
    "agent_readiness",
    "bound_port",
    "serve_health",
    "start_agent_health",
]

# A request line and headers larger than this, or slower than the timeout, are dropped:
# the port is unauthenticated (a NetworkPolicy limits who reaches it, see deploy/).
MAX_REQUEST_BYTES = 4096
REQUEST_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    detail: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        return orjson.dumps({"ok": self.ok, **self.detail})


class Heartbeat:
    """A task on the loop notes the time every ``interval``; :meth:`verdict` fails once
    the last note is older than ``stale_after`` (the loop did not run it)."""

    def __init__(
        self,
        interval: float = 1.0,
        stale_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.stale_after = stale_after
        self._clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self._clock()

    async def run(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.interval)

    def verdict(self) -> Verdict:
        age = self._clock() - self.last
        return Verdict(age <= self.stale_after, {"loop_heartbeat_age_seconds": round(age, 3)})


class ProgressWatch:
    """Is a consumer making progress? Fed samples of committed offsets and lag per
    partition: a partition with records waiting (lag > 0) whose committed offset has not
    moved for ``stall_seconds`` is stalled. A partition with nothing waiting never is."""

    def __init__(self, stall_seconds: float = 300.0) -> None:
        self.stall_seconds = stall_seconds
        self._since: dict[Any, tuple[int | None, float]] = {}

    def observe(
        self, now: float, committed: Mapping[Any, int | None], lag: Mapping[Any, int]
    ) -> None:
        seen: dict[Any, tuple[int | None, float]] = {}
        for tp in set(committed) | set(lag):
            offset = committed.get(tp)
            previous = self._since.get(tp)
            if previous is None or previous[0] != offset or lag.get(tp, 0) <= 0:
                seen[tp] = (offset, now)  # moved, new, or nothing waiting: the clock restarts
            else:
                seen[tp] = previous
        self._since = seen

    def stalled(self, now: float) -> list[Any]:
        return sorted(
            (tp for tp, (_, since) in self._since.items() if now - since > self.stall_seconds),
            key=str,
        )


def _samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of the ingest metric ``name`` whatever its prefix (``pectrack_`` today;
    issue #14 moves every metric to ``pec_``)."""
    return [
        (dict(sample.labels), sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name.split("_", 1)[1:] == [name]
    ]


def _value(registry: CollectorRegistry, name: str) -> float | None:
    samples = _samples(registry, name)
    return samples[0][1] if samples else None


def agent_readiness(registry: CollectorRegistry) -> Verdict:
    """The agent is ready once it reached Kafka and read its cursors: only then does it
    start a worker per mailbox, each of which creates its ``mailbox_up`` series. IMAP
    state is reported (up, connected, owned) but does not make the pod unready: a
    provider outage is not fixed by moving or restarting the pod (the alerts report it)."""
    owned = _value(registry, "ingest_mailboxes")
    up = _samples(registry, "imap_mailbox_up")
    connected = _value(registry, "imap_connected_mailboxes") or 0.0
    started = owned is not None and len(up) >= owned
    detail = {
        "kafka": "connected" if started else "connecting",
        "mailboxes": int(owned or 0),
        "mailboxes_up": sum(1 for _, value in up if value >= 1),
        "mailboxes_connected": int(connected),
    }
    return Verdict(started, detail)


def agent_liveness(heartbeat: Heartbeat) -> Verdict:
    """The loop answers and ran its heartbeat recently; nothing else restarts an agent
    (a restart logs every mailbox of the shard in again)."""
    return heartbeat.verdict()


_STATUS = {200: b"200 OK", 404: b"404 Not Found", 503: b"503 Service Unavailable"}


async def _answer(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    routes: Mapping[str, Callable[[], Verdict]],
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECONDS)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        writer.close()
        return
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    path = parts[1].split(b"?", 1)[0].decode("ascii", "replace") if len(parts) == 3 else ""
    check = routes.get(path) if parts[0] in (b"GET", b"HEAD") else None
    if check is None:
        status, body = 404, b'{"ok": false, "error": "not found"}'
    else:
        verdict = check()
        status, body = (200 if verdict.ok else 503), verdict.body()
    writer.write(
        b"HTTP/1.1 " + _STATUS[status] + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + (body if parts[0] != b"HEAD" else b"")
    )
    with contextlib.suppress(OSError):
        await writer.drain()
    writer.close()


async def serve_health(
    live: Callable[[], Verdict],
    ready: Callable[[], Verdict],
    host: str = "127.0.0.1",
    port: int = 0,
) -> asyncio.Server:
    """Serve ``/livez`` and ``/readyz`` on the running loop; close the server to stop."""
    routes = {"/livez": live, "/readyz": ready}
    return await asyncio.start_server(
        lambda r, w: _answer(r, w, routes), host, port, limit=MAX_REQUEST_BYTES
    )


def bound_port(server: asyncio.Server) -> int:
    sockets: Iterable[Any] = server.sockets
    return int(next(iter(sockets)).getsockname()[1])


async def start_agent_health(registry: CollectorRegistry, port: int, host: str) -> asyncio.Server:
    """The agent's probes: its heartbeat task and the server, on the running loop (both
    end with it)."""
    heartbeat = Heartbeat()
    _tasks.add(asyncio.get_running_loop().create_task(heartbeat.run(), name="health:heartbeat"))
    return await serve_health(
        lambda: agent_liveness(heartbeat), lambda: agent_readiness(registry), host, port
    )


_tasks: set[asyncio.Task[None]] = set()  # strong references to the heartbeat tasks
