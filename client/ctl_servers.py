"""tubectl's servers: the addresses it is given, one lazy connection each, and failures as
one-line messages.

Theory of operation. Every subcommand runs an action on each server it names (`each`), in
order, and gets back a `Fanout`: the value of each server that answered, and a `Failure`
(server, message) for each that did not. Nothing is raised past here but a bug: a server
that cannot be reached, that answers an error line, lacks an extension or breaks the
protocol is a message, and the others still answer. A connection is opened on first use and
kept for the next action (`top` runs many); one that broke is dropped and opened anew next
time. The exit status follows from the failures (`Fanout.status`): NOT_FOUND from some
servers while others answered is no failure of the command (a tube that exists on one
server only), anything else is.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import attrs

from .errors import (
    AuthNotEnabled,
    ConnectFailed,
    ConnectionClosed,
    ExtensionNotSupported,
    IOTimeout,
    NotFound,
    ServerError,
    TubeError,
    Unauthorized,
    UnexpectedReply,
)
from .job import Address, server_name
from .sync import Client

R = TypeVar("R")
DEFAULT_PORT = 11300
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
CONNECT_TIMEOUT = 5.0  # seconds, at most; --io-timeout when smaller
TLS_SCHEME = "tls://"


def parse_server(text: str) -> tuple[Address, bool]:
    """A server as -s takes it: `parse_address`'s forms, or tls://HOST:PORT for one that
    speaks TLS; the address, and whether TLS was asked for."""
    text = text.strip()
    if not text.startswith(TLS_SCHEME):
        return parse_address(text), False
    address = parse_address(text[len(TLS_SCHEME):])
    if isinstance(address, str):
        raise ValueError(f"bad server {text!r}: TLS is for TCP servers (a UNIX socket is plain)")
    return address, True


def parse_address(text: str) -> Address:
    """A server as tubectl takes it: HOST:PORT, [IPv6]:PORT, HOST (port 11300) or
    unix:/path. ValueError with a message for people otherwise."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError(f"bad server {text!r}: unix: needs a socket path")
        return path
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad server {text!r}: expected [IPv6]:PORT")
        if rest:
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise ValueError(f"bad server {text!r}: write an IPv6 address as [ADDR]:PORT")
    if not host:
        raise ValueError(f"bad server {text!r}: expected HOST:PORT")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"bad server {text!r}: the port must be 1 to 65535")
    return (host, int(port))


@attrs.frozen
class Failure:
    """Why one server gave no value: the line tubectl prints (after "tubectl: "), and
    whether it was the server's NOT_FOUND."""

    server: str
    message: str
    not_found: bool = False


@attrs.frozen
class Fanout(Generic[R]):
    """The outcome of one action on every server: values in server order, and failures."""

    values: list[tuple[str, R]]
    failures: list[Failure]

    @property
    def status(self) -> int:
        """The exit status: 0 when some server answered and every other one only said
        NOT_FOUND; 1 otherwise."""
        if not self.values or any(not f.not_found for f in self.failures):
            return 1
        return 0


def _reason(error: BaseException) -> str:
    cause = error.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        text = cause.strerror
    elif isinstance(cause, TimeoutError):
        text = "timed out"
    else:
        text = str(cause or error)
    return text[:1].lower() + text[1:]


def describe(server: str, error: TubeError, missing: str) -> Failure:
    """`error` from `server` as a Failure; `missing` says what NOT_FOUND means here."""
    if isinstance(error, ConnectFailed):
        return Failure(server, f"cannot connect to {server}: {_reason(error)}")
    if isinstance(error, IOTimeout):
        return Failure(server, f"{server}: no reply in time (see --io-timeout)")
    if isinstance(error, ConnectionClosed):
        return Failure(server, f"{server}: the connection broke: {_reason(error)}")
    if isinstance(error, ExtensionNotSupported):
        return Failure(server, f"{server}: the server does not support {error.command} "
                               "(a tubeserver extension; beanstalkd lacks it)")
    if isinstance(error, NotFound):
        return Failure(server, f"{server}: {missing}", not_found=True)
    if isinstance(error, Unauthorized):
        return Failure(server, f"{server}: UNAUTHORIZED: the token was refused, or its rights "
                               "do not cover this (see --token-file, TUBECTL_TOKEN)")
    if isinstance(error, AuthNotEnabled):
        return Failure(server, f"{server}: the server does not have authentication turned "
                               "on; run without a token")
    if isinstance(error, ServerError):
        return Failure(server, f"{server}: the server answered {error}")
    if isinstance(error, UnexpectedReply):
        return Failure(server, f"{server}: not a valid reply: {error}")
    return Failure(server, f"{server}: {error}")


class Servers:
    """The servers of one tubectl run, each with a connection opened on first use."""

    def __init__(self, addresses: Sequence[Address], io_timeout: float, *,
                 tls: Sequence[ssl.SSLContext | None] | None = None,
                 token: str | None = None) -> None:
        self.addresses = list(addresses)
        self.names = [server_name(a) for a in self.addresses]
        self.io_timeout = io_timeout
        # Per server: its TLS context (None: plain), and the token every connection sends.
        self.tls = list(tls) if tls is not None else [None] * len(self.addresses)
        self._token = token
        self._clients: dict[int, Client[bytes]] = {}

    def client(self, i: int) -> Client[bytes]:
        """The connection to server `i`, opened now if need be (ConnectFailed, Unauthorized,
        AuthNotEnabled)."""
        client = self._clients.get(i)
        if client is None or client.closed:
            client = Client(self.addresses[i], io_timeout=self.io_timeout,
                            connect_timeout=min(CONNECT_TIMEOUT, self.io_timeout),
                            ssl=self.tls[i], token=self._token)
            self._clients[i] = client
        return client

    def each(self, action: Callable[[Client[bytes]], R], missing: str = "not found"
             ) -> Fanout[R]:
        """`action` on every server in turn; `missing` says what NOT_FOUND means."""
        values: list[tuple[str, R]] = []
        failures: list[Failure] = []
        for i, name in enumerate(self.names):
            try:
                values.append((name, action(self.client(i))))
            except TubeError as e:
                failures.append(describe(name, e, missing))
        return Fanout(values, failures)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
