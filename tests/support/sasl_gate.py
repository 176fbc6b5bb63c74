"""A SASL front end for the embedded broker: the server side of Kafka's SASL exchange.

The embedded broker's own ``--authentication`` can only refuse (README, security), so the
successful path is exercised here as the TLS tests do it: a front end
(:class:`~tests.support.proxy.ProxiedBroker` with ``sasl=``) that every client must pass
and that the broker advertises as its only address. It answers ``SaslHandshake`` and
``SaslAuthenticate`` (v0/v1, as Kafka does since 1.0) itself, relays ``ApiVersions`` (the
only request Kafka allows before authentication), hangs up on any other request before
the client authenticated, then relays bytes both ways.

Mechanisms, each checked as a Kafka broker checks it:

- ``SCRAM-SHA-256``/``SCRAM-SHA-512``: by ``scramp`` (an independent SCRAM server
  implementation, RFC 5802/7677), from credentials derived once (salt, 4096 iterations);
- ``PLAIN``: ``authzid NUL user NUL password`` against the user table;
- ``OAUTHBEARER``: the RFC 7628 client response's bearer token against ``tokens()``
  (called per attempt, so a test can rotate what is valid).

A refusal is answered like Kafka's: error 58 (SASL_AUTHENTICATION_FAILED) with a message,
then the connection is closed.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scramp import ScramMechanism

__all__ = ["SaslGate"]

_API_VERSIONS, _HANDSHAKE, _AUTHENTICATE = 18, 17, 36
_UNSUPPORTED_MECHANISM, _ILLEGAL_STATE, _AUTH_FAILED = 33, 34, 58
_MAX_FRAME = 1 << 20


class _RefusedError(Exception):
    pass


@dataclass
class SaslGate:
    """Users (name -> password) for PLAIN and SCRAM; valid OAUTHBEARER tokens."""

    users: Mapping[str, str]
    tokens: Callable[[], set[str]] = set
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
    accepted: Counter[tuple[str, str]] = field(default_factory=Counter)  # (mechanism, who)
    refused: Counter[str] = field(default_factory=Counter)  # by mechanism
    _scram: dict[str, tuple[ScramMechanism, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            mechanism = ScramMechanism(name)
            self._scram[name] = (
                mechanism,
                {user: mechanism.make_auth_info(pw, 4096) for user, pw in self.users.items()},
            )

    async def admit(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        server_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
    ) -> bool:
        """Run the exchange; ``True`` once the client authenticated (then relay)."""
        mechanism: str | None = None
        state: dict[str, Any] = {}
        try:
            while True:
                frame = await _read_frame(client_r)
                key, version, correlation, body = _parse_request(frame)
                if key == _API_VERSIONS:
                    server_w.write(struct.pack(">i", len(frame)) + frame)
                    await server_w.drain()
                    answer = await _read_frame(server_r)
                    client_w.write(struct.pack(">i", len(answer)) + answer)
                elif key == _HANDSHAKE and version in (0, 1) and mechanism is None:
                    wanted = _string(body, 0)[0]
                    ok = wanted in self.mechanisms
                    names = b"".join(_encode_string(m) for m in self.mechanisms)
                    error = 0 if ok else _UNSUPPORTED_MECHANISM
                    _respond(client_w, correlation,
                             struct.pack(">hi", error, len(self.mechanisms)) + names)  # fmt: skip
                    if not ok or version == 0:  # v0: raw tokens, pre-1.0 Kafka only
                        await client_w.drain()
                        return False
                    mechanism = wanted
                elif key == _AUTHENTICATE and version in (0, 1) and mechanism is not None:
                    auth = _bytes(body)
                    try:
                        reply, done = self._step(mechanism, state, auth)
                    except _RefusedError as exc:
                        self.refused[mechanism] += 1
                        _respond(client_w, correlation,
                                 _auth_body(version, _AUTH_FAILED, str(exc), b""))  # fmt: skip
                        await client_w.drain()
                        return False
                    _respond(client_w, correlation, _auth_body(version, 0, None, reply))
                    if done:
                        await client_w.drain()
                        self.accepted[(mechanism, str(state.get("who")))] += 1
                        return True
                else:  # anything else before authentication: hang up, as Kafka does
                    return False
                await client_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, struct.error, ValueError):
            return False

    def _step(self, mechanism: str, state: dict[str, Any], auth: bytes) -> tuple[bytes, bool]:
        if mechanism == "PLAIN":
            parts = auth.split(b"\0")
            if len(parts) != 3:
                raise _RefusedError("Authentication failed: invalid SASL/PLAIN request")
            user, password = parts[1].decode(), parts[2].decode()
            if self.users.get(user) != password:
                raise _RefusedError("Authentication failed: Invalid username or password")
            state["who"] = user
            return b"", True
        if mechanism == "OAUTHBEARER":
            text = auth.decode()
            fields = dict(part.split("=", 1) for part in text.split("\x01")[1:] if "=" in part)
            token = fields.get("auth", "").removeprefix("Bearer ")
            if not token or token not in self.tokens():
                raise _RefusedError("Authentication failed: invalid token")
            state["who"] = "oauth"
            return b"", True
        scram, infos = self._scram[mechanism]
        failed = _RefusedError(
            "Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {mechanism}"
        )
        try:
            if "server" not in state:
                server = scram.make_server(lambda user: infos[user])
                server.set_client_first(auth.decode())
                state["server"] = server
                state["who"] = getattr(server, "user", None) or _scram_user(auth)
                return server.get_server_first().encode(), False
            server = state["server"]
            server.set_client_final(auth.decode())
            return server.get_server_final().encode(), True
        except Exception:  # unknown user (KeyError), bad proof (ScramException)
            raise failed from None


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= _MAX_FRAME:
        raise ValueError("bad frame size")
    return await reader.readexactly(size)


def _parse_request(frame: bytes) -> tuple[int, int, int, bytes]:
    """Request header v1 (api key, version, correlation id, nullable client id), body."""
    key, version, correlation = struct.unpack_from(">hhi", frame)
    (length,) = struct.unpack_from(">h", frame, 8)
    offset = 10 + max(length, 0)
    return key, version, correlation, frame[offset:]


def _string(data: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">h", data, offset)
    start = offset + 2
    return data[start : start + length].decode(), start + length


def _bytes(body: bytes) -> bytes:
    (length,) = struct.unpack_from(">i", body)
    return body[4 : 4 + length]


def _encode_string(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _auth_body(version: int, error: int, message: str | None, auth: bytes) -> bytes:
    body = struct.pack(">h", error) + _encode_string(message) + struct.pack(">i", len(auth)) + auth
    return body + (struct.pack(">q", 0) if version >= 1 else b"")


def _respond(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation) + body
    writer.write(struct.pack(">i", len(payload)) + payload)


def _scram_user(client_first: bytes) -> str:
    """``n,,n=reader,r=...`` -> ``reader`` (for the ``accepted`` counter only)."""
    for part in client_first.decode().split(","):
        if part.startswith("n="):
            return part[2:]
    return "?"
