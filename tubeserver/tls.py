"""TLS settings of the server: the certificate files, the SSLContext made from them once at
start-up, and a one-line reason for a failed handshake.

Only TCP listeners speak TLS (a UNIX socket stays plain: its file permissions are its access
control). TLS connections are served by a trio task each (`Server.handle_tls`), beside the
epoll hub that keeps serving plain ones; the protocol inside TLS is unchanged. The files are
read once: a renewed certificate takes a restart (SIGHUP does not reload them).
"""

from __future__ import annotations

import ssl
from typing import Final, NoReturn

import attrs

# A connection that has not finished its handshake this many seconds after it was accepted
# is closed: a client that connects and says nothing must not hold a task and a descriptor.
HANDSHAKE_TIMEOUT: Final = 10.0

# Reasons OpenSSL gives for the handshakes a server sees fail most, with what they usually mean.
_HINTS: Final = {
    "WRONG_VERSION_NUMBER": "not TLS (a plain-text client?)",
    "HTTP_REQUEST": "plain HTTP, not TLS",
    "UNSUPPORTED_PROTOCOL": "the client offered only TLS versions below 1.2",
    "NO_SHARED_CIPHER": "no cipher in common",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate (--tls-client-ca)",
    "CERTIFICATE_VERIFY_FAILED": "the client's certificate was refused",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust this server's certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client refused this server's certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the client says this server's certificate expired",
    "UNEXPECTED_EOF_WHILE_READING": "the client hung up mid-handshake",
}


class TlsError(Exception):
    """The TLS files cannot be used; the message names the file and why."""


@attrs.frozen
class Tls:
    """The server's TLS settings: the files as given (the HTTP endpoint loads them too) and
    the protocol listener's context, made from them at start-up."""

    cert: str
    key: str
    client_ca: str | None
    context: ssl.SSLContext = attrs.field(eq=False, repr=False)

    @property
    def verifies_clients(self) -> bool:
        return self.client_ca is not None


def _readable(flag: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsError(f"{flag} {path}: cannot read it: {e.strerror or e}") from None


def _encrypted() -> NoReturn:
    raise TlsError("is encrypted: give the server an unencrypted key (readable by its user only)")


def load(cert: str, key: str, client_ca: str | None = None) -> Tls:
    """Read the files and make the server's context: TLS 1.2 or later, and with `client_ca`
    a certificate from a client that CA signed is required. TlsError says what is wrong."""
    if b"-----BEGIN CERTIFICATE-----" not in _readable("--tls-cert", cert):
        raise TlsError(f"--tls-cert {cert}: no PEM certificate in it")
    if b"PRIVATE KEY-----" not in _readable("--tls-key", key):
        raise TlsError(f"--tls-key {key}: no PEM private key in it")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key, password=_encrypted)
    except TlsError as e:
        raise TlsError(f"--tls-key {key}: {e}") from None
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(f"--tls-key {key} is not the key of --tls-cert {cert}") from None
        raise TlsError(f"--tls-cert {cert} / --tls-key {key}: {_ssl_text(e)}") from None
    except OSError as e:  # the files went away since they were read
        raise TlsError(f"--tls-cert {cert} / --tls-key {key}: {e.strerror or e}") from None
    if client_ca is not None:
        if b"-----BEGIN CERTIFICATE-----" not in _readable("--tls-client-ca", client_ca):
            raise TlsError(f"--tls-client-ca {client_ca}: no PEM certificate in it")
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as e:
            raise TlsError(f"--tls-client-ca {client_ca}: {_ssl_text(e)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return Tls(cert, key, client_ca, context)


def _ssl_text(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def handshake_failure(error: BaseException) -> str:
    """Why a handshake failed, in a few words for the one log line it gets: OpenSSL's reason
    (with what it usually means), else the error's own text. `error` is what trio raised
    (BrokenResourceError), whose cause is the ssl or socket error."""
    cause = error.__cause__ or error.__context__ or error
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
        return f"CERTIFICATE_VERIFY_FAILED: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError) and cause.reason:
        hint = _HINTS.get(cause.reason)
        return f"{cause.reason}: {hint}" if hint else cause.reason
    if isinstance(cause, ssl.SSLEOFError) or (
        isinstance(cause, ssl.SSLError) and "EOF" in str(cause)
    ):
        return "the client hung up mid-handshake"
    text = _ssl_text(cause)
    return text.splitlines()[0] if text else type(cause).__name__
