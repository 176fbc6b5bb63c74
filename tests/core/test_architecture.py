"""pipeline.core stays pure: no I/O imports, no clock, no environment."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "pipeline" / "core"
FORBIDDEN_MODULES = {
    "asyncio", "socket", "ssl", "faust", "aiokafka", "aioimaplib", "mode", "subprocess",
    "time", "os", "io", "pathlib", "prometheus_client", "urllib", "http", "requests",
    "agents", "random", "secrets", "logging",
}  # fmt: skip
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "open", "getenv", "monotonic", "perf_counter"}


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_io() -> None:
    """No module of pipeline/core imports asyncio, Kafka, IMAP, sockets, files or time."""
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for name in _imports(ast.parse(path.read_text())):
            top = name.split(".")[0]
            if top in FORBIDDEN_MODULES or (
                top == "pipeline" and not name.startswith("pipeline.core")
            ):
                offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_core_reads_no_clock() -> None:
    """No call named now()/today()/time()/open()/getenv() appears in pipeline/core."""
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in FORBIDDEN_CALLS:
                    offenders.append(f"{path.name}:{node.lineno} {name}()")
    assert offenders == []


def test_the_check_would_catch_an_offender(tmp_path: Path) -> None:
    """The scanners see a forbidden import and a clock read (the check can fail)."""
    tree = ast.parse("import asyncio\nfrom datetime import datetime\nx = datetime.now()\n")
    assert "asyncio" in _imports(tree)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert isinstance(calls[0].func, ast.Attribute)
    assert calls[0].func.attr == "now"
