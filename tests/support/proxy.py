"""A loopback TCP proxy for fault tests: delay traffic, cut connections, refuse new ones.

::

    with TcpProxy("127.0.0.1", dovecot.port) as proxy:   # clients connect to proxy.port
        proxy.delay = 0.2          # every forwarded chunk waits 200 ms (both directions)
        proxy.cut()                # hang up every open connection now
        proxy.down()               # stop listening: connects are refused ...
        proxy.up()                 # ... until the port listens again

    with ProxiedBroker() as broker:   # the embedded broker, reached only through a proxy
        broker.proxy.down()           # "Kafka unavailable" for every client, data kept
        broker.proxy.up()

    with ProxiedBroker(tls=context) as broker:   # Kafka over TLS: clients must use TLS
    with ProxiedBroker(sasl=SaslGate(users)) as broker:   # clients must authenticate (SASL)

The proxy runs its own asyncio loop in a thread, so it keeps forwarding while the test's
loop is blocked, and a subprocess (agent, worker) can be its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pipeline.dev.embedded import (
    EmbeddedBroker,
    LocalS3,
    free_port,
)
from tests.support.sasl_gate import SaslGate

__all__ = ["ProxiedBroker", "TcpProxy"]

_T = TypeVar("_T")
_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``, under the test's control."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
        sasl: SaslGate | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.tls = tls  # clients must speak TLS to the proxy; it forwards in plaintext
        self.sasl = sasl  # clients must authenticate to the proxy first (Kafka SASL)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.delay = 0.0  # seconds added before forwarding each chunk
        self.accepted = 0  # connections accepted since start
        self.cuts = 0  # connections hung up by cut()/down()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control, from any thread --

    def start(self) -> Self:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        """Listen (again) on the same port."""
        self._call(self._listen())

    def down(self) -> None:
        """Stop listening and hang up every connection: the service looks gone."""
        self._call(self._close_listener())
        self.cut()

    def cut(self) -> int:
        """Hang up every open connection (both sides see a reset/EOF); returns how many."""
        return self._call(self._cut())

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Close everything and end the thread; safe to call twice."""
        if not self._thread.is_alive():
            return
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the loop's side --

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, reuse_address=True, ssl=self.tls
            )

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def _cut(self) -> int:
        writers = list(self._writers)
        self._writers.clear()
        for writer in writers:
            with contextlib.suppress(OSError, RuntimeError):
                writer.transport.abort()
        self.cuts += len(writers) // 2
        return len(writers) // 2

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        pair = {client_w, server_w}
        self._writers |= pair
        try:
            if self.sasl is not None and not await self.sasl.admit(
                client_r, client_w, server_r, server_w
            ):
                return
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            self._writers -= pair
            for writer in pair:
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.transport.abort()  # one side gone: end the other too, like a cut cable


class ProxiedBroker(EmbeddedBroker):
    """The embedded broker, advertised at a :class:`TcpProxy`'s address (``port``).

    Every client, including the ones metadata sends back, reaches the broker through the
    proxy, so ``proxy.down()`` makes Kafka unreachable without losing a record, and
    ``kill()``/``start()`` restart the broker process behind the same proxy (durable only
    with ``s3``).
    """

    def __init__(
        self,
        *,
        s3: LocalS3 | None = None,
        log_path: Path | None = None,
        tls: ssl.SSLContext | None = None,
        sasl: SaslGate | None = None,
    ) -> None:
        super().__init__(s3=s3, log_path=log_path, listen_port=free_port())
        self.proxy = TcpProxy(self.host, self.listen_port, port=self.port, tls=tls, sasl=sasl)

    def start(self, timeout: float = 20.0) -> Self:
        super().start(timeout)
        if not self.proxy.started:
            self.proxy.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.proxy.stop()
        super().stop(timeout)
