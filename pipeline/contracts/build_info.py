"""The running build: ``pectrack --version`` and the ``pec_build_info`` metric.

``pec_build_info{version, python}`` is always 1: join on it to see which version each
agent and worker runs during a rollout.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Gauge

__all__ = ["BUILD_INFO", "register_build_info", "version_string"]

BUILD_INFO = "pec_build_info"


def version_string() -> str:
    """The installed distribution's version (``0+unknown`` when run from a bare tree)."""
    try:
        return version("pectrack")
    except PackageNotFoundError:
        return "0+unknown"


def register_build_info(registry: CollectorRegistry) -> Gauge:
    gauge = Gauge(
        BUILD_INFO,
        "Always 1; the labels name the running build.",
        ["version", "python"],
        registry=registry,
    )
    gauge.labels(version_string(), platform.python_version()).set(1)
    return gauge
