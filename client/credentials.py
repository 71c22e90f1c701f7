"""TLS and token settings as the command-line tools (tubeworker, tubectl) take them.

Both read the same flags: --tls, --tls-ca FILE, --tls-cert FILE --tls-key FILE, and the token
from --token-file FILE or a variable; never from a flag holding the token itself, which any
user could read in `ps`. Everything is checked before anything connects; problems are
ValueErrors with a message for people (the tools turn them into usage errors, status 2),
which never quote a token.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from .commands import check_token

TOKEN_HELP = (
    "a token is read from a file or a variable, never from the command line, where any "
    "user could read it in `ps`"
)


def client_context(tls: bool, ca: str | None = None, cert: str | None = None,
                   key: str | None = None) -> ssl.SSLContext | None:
    """The TLS context for the flags, or None for plain TCP. `tls` alone trusts the system's
    CAs; `ca` trusts the CAs in that file instead; `cert` and `key` (together) present a
    client certificate. Any of the files turns TLS on. Only TLS 1.2 and later."""
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together; give both")
    if not (tls or ca or cert):
        return None
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"--tls-ca {ca}: {_why(e)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            context.load_cert_chain(cert, key, password=_no_password)
        except ValueError as e:
            raise ValueError(f"--tls-key {key}: {e}") from None
        except (OSError, ssl.SSLError) as e:
            reason = "is not the key of --tls-cert" if getattr(
                e, "reason", None) == "KEY_VALUES_MISMATCH" else _why(e)
            raise ValueError(f"--tls-cert {cert} / --tls-key {key}: {reason}") from None
    return context


def _no_password() -> str:
    raise ValueError("is encrypted; give an unencrypted key (readable by its user only)")


def _why(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return f"not usable ({error.reason})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def read_token(path: str) -> str:
    """The token in `path`: its one line, surrounding whitespace (a final newline) dropped."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(4096)
    except OSError as e:
        raise ValueError(f"--token-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"--token-file {path}: not an ASCII token") from None
    token = text.strip()
    if not token:
        raise ValueError(f"--token-file {path}: empty")
    if "\n" in token:
        raise ValueError(f"--token-file {path}: more than one line")
    try:
        return check_token(token)
    except ValueError as e:
        raise ValueError(f"--token-file {path}: {e}") from None


def token_from(token_file: str | None, env: Mapping[str, str], variable: str,
               file_variable: str) -> str | None:
    """The token: --token-file wins, then the `file_variable` (a path), then `variable`
    (the token itself); both variables at once is a mistake worth saying."""
    if token_file is None:
        token_file = env.get(file_variable) or None
        if token_file is not None and env.get(variable):
            raise ValueError(f"{variable} and {file_variable} are both set; set one")
    if token_file is not None:
        return read_token(token_file)
    raw = env.get(variable)
    if not raw:
        return None
    try:
        return check_token(raw.strip())
    except ValueError as e:
        raise ValueError(f"{variable}: {e}") from None
