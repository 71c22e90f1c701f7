"""Command line: argv and TUBESERVER_* variables -> Config -> serve.

Flags follow beanstalkd's (-l -p -z -b -f -F -s -V -v -h) with long forms; every flag but
--wal-repair can also come from an environment variable, and the command line wins. Bad input
prints usage and exits 2; a server that cannot listen or use its log exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trio

from . import BUILD, __version__
from .caps import DEFAULT_BUFFER, Caps, buffer_floor
from .limits import (
    AUTH_DEADLINE,
    DEFAULT_LISTEN,
    DEFAULT_MAX_JOB_SIZE,
    DEFAULT_PORT,
    JOB_SIZE_CAP,
    PREAUTH_BUFFER,
)
from .server import Config, ListenError, serve
from .tls import HANDSHAKE_TIMEOUT, Tls, TlsError
from .tls import load as load_tls
from .tokens import AuthFileError, entry, new_token
from .tokens import load as load_tokens
from .tracking import DEFAULT_MEMORY, DEFAULT_TTL
from .wal import DEFAULT_FSYNC_MS, DEFAULT_SEGMENT_SIZE, MIN_SEGMENT_SIZE, WalError

log = logging.getLogger("tubeserver")


def _bounded_int(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from `low` (to `high`), with messages naming `what`."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"{low}-{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} {value} is out of range ({span})")
        return value

    return convert


_port = _bounded_int("port", 0, 65535)
_size = _bounded_int("size", 0)
_count = _bounded_int("verbosity", 0)
_fsync_ms = _bounded_int("fsync interval", 0, 3_600_000)
_segment = _bounded_int("segment size", MIN_SEGMENT_SIZE, 1 << 40)
_result_ttl = _bounded_int("result TTL", 0, 10 * 365 * 86400)
_result_memory = _bounded_int("result memory", 0)
_max_connections = _bounded_int("connection count", 0)
_max_jobs = _bounded_int("job count", 0)

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _memory_size(what: str) -> Callable[[str], int]:
    """An argparse type: bytes, or a number with K, M, G or T (powers of 1024: 512M, 2G)."""

    def convert(text: str) -> int:
        raw = text.strip().lower().removesuffix("ib").removesuffix("b")
        digits = raw.rstrip("kmgt")
        unit = raw[len(digits):]
        if not digits.isdigit() or not digits.isascii() or unit not in _UNITS:
            raise argparse.ArgumentTypeError(
                f"invalid {what} {text!r} (bytes, or a number with K, M, G or T: 512M, 2G)")
        return int(digits) * _UNITS[unit]

    return convert


def _seconds(what: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None
        if not 0 <= value <= 86400 * 365:
            raise argparse.ArgumentTypeError(f"{what} {text} is out of range (0 to a year)")
        return value

    return convert


_max_memory = _memory_size("memory size")
_buffer = _memory_size("buffer size")
_stall = _seconds("stall timeout")
_auth_deadline = _seconds("auth deadline")


def _path(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty directory name")
    return text


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")


def _timezone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {text!r} (an IANA name such as Europe/Berlin, or UTC)"
        ) from None
    return text


def _http(text: str) -> tuple[str, int]:
    """PORT, ADDR:PORT or [IPv6]:PORT; the address defaults to loopback."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_LISTEN, text
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected PORT or ADDR:PORT (as 127.0.0.1:11301), got {text!r}")
    return host, int(port)


def _file(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty file name")
    return text
def _hosts(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    for name in names:
        if not all(ch.isalnum() or ch in "-." for ch in name):
            raise argparse.ArgumentTypeError(f"not a host name: {name!r}")
    return names


def _listen(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty listen address")
    return text


# (env variable, argparse dest, converter, default). A flag on the command line wins; the
# variable is read (and validated) only for flags that were not given.
_SETTINGS: list[tuple[str, str, Callable[[str], object], object]] = [
    ("TUBESERVER_LISTEN", "listen", _listen, DEFAULT_LISTEN),
    ("TUBESERVER_PORT", "port", _port, DEFAULT_PORT),
    ("TUBESERVER_MAX_JOB_SIZE", "max_job_size", _size, DEFAULT_MAX_JOB_SIZE),
    ("TUBESERVER_VERBOSE", "verbose", _count, 0),
    ("TUBESERVER_WAL_DIR", "wal_dir", _path, None),
    ("TUBESERVER_WAL_SEGMENT_SIZE", "segment_size", _segment, DEFAULT_SEGMENT_SIZE),
    ("TUBESERVER_FSYNC_MS", "fsync_ms", _fsync_ms, None),
    ("TUBESERVER_NO_FSYNC", "no_fsync", _flag, False),
    ("TUBESERVER_RESULT_TTL", "result_ttl", _result_ttl, int(DEFAULT_TTL)),
    ("TUBESERVER_RESULT_MEMORY", "result_memory", _result_memory, DEFAULT_MEMORY),
    ("TUBESERVER_TIMEZONE", "timezone", _timezone, None),
    ("TUBESERVER_HTTP", "http", _http, None),
    ("TUBESERVER_TLS_CERT", "tls_cert", _file, None),
    ("TUBESERVER_TLS_KEY", "tls_key", _file, None),
    ("TUBESERVER_TLS_CLIENT_CA", "tls_client_ca", _file, None),
    ("TUBESERVER_AUTH_FILE", "auth_file", _path, None),
    ("TUBESERVER_AUTH_DEADLINE", "auth_deadline", _auth_deadline, AUTH_DEADLINE),
    ("TUBESERVER_HTTP_ALLOW_HOSTS", "http_allow_hosts", _hosts, ()),
    ("TUBESERVER_MAX_CONNECTIONS", "max_connections", _max_connections, 0),
    ("TUBESERVER_MAX_JOBS", "max_jobs", _max_jobs, 0),
    ("TUBESERVER_MAX_MEMORY", "max_memory", _max_memory, 0),
    ("TUBESERVER_MAX_CONNECTION_BUFFER", "connection_buffer", _buffer, 0),
    ("TUBESERVER_STALL_TIMEOUT", "stall_timeout", _stall, 0.0),
]
# Meaningless without a log directory: said so when given on the command line.
_LOG_ONLY = ("segment_size", "fsync_ms", "no_fsync")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tubeserver",
        description="A beanstalkd-compatible job server. Every flag can also be set with the "
        "environment variable named in its help; the command line wins.",
    )
    p.add_argument("-l", "--listen", type=_listen, metavar="ADDR",
                   help="address to listen on, or unix:/path for a UNIX socket "
                   f"(default {DEFAULT_LISTEN}: loopback only; use 0.0.0.0 for all "
                   "interfaces) [TUBESERVER_LISTEN]")
    p.add_argument("-p", "--port", type=_port, metavar="PORT",
                   help=f"TCP port (default {DEFAULT_PORT}; ignored for unix:) "
                   "[TUBESERVER_PORT]")
    p.add_argument("-z", "--max-job-size", type=_size, metavar="BYTES",
                   help=f"largest job body accepted (default {DEFAULT_MAX_JOB_SIZE}, at most "
                   f"{JOB_SIZE_CAP}) [TUBESERVER_MAX_JOB_SIZE]")
    log = p.add_argument_group(
        "write-ahead log", "With -b, every change a client is told about is logged before the "
        "reply, and a restart brings back every job (reserved ones as ready).")
    log.add_argument("-b", "--wal-dir", type=_path, metavar="DIR",
                     help="keep a write-ahead log in DIR, made if missing (default: none, "
                     "jobs live in memory only) [TUBESERVER_WAL_DIR]")
    log.add_argument("-f", "--fsync-ms", type=_fsync_ms, metavar="MS",
                     help=f"fsync the log at most every MS milliseconds (default "
                     f"{DEFAULT_FSYNC_MS}); 0: every change is on disk before its reply, one "
                     "shared fsync for all connections [TUBESERVER_FSYNC_MS]")
    log.add_argument("-F", "--no-fsync", action="store_const", const=True,
                     help="never fsync: survive a process crash, not a power loss "
                     "[TUBESERVER_NO_FSYNC=1]")
    log.add_argument("-s", "--wal-segment-size", dest="segment_size", type=_segment,
                     metavar="BYTES",
                     help=f"size of each log file (default {DEFAULT_SEGMENT_SIZE}, at least "
                     f"{MIN_SEGMENT_SIZE}) [TUBESERVER_WAL_SEGMENT_SIZE]")
    log.add_argument("--wal-repair", action="store_true",
                     help="start even if the log is damaged in the middle, skipping the "
                     "damaged records (command line only: a repair is a decision, not a "
                     "setting)")
    track = p.add_argument_group(
        "job tracking", "What the server remembers of a finished job (its result, counts, times "
        "and last failure reason) for `result` and `job-status`; see protocol.md.")
    track.add_argument("--result-ttl", type=_result_ttl, metavar="SECONDS",
                       help=f"keep the record of a finished job this long (default "
                       f"{int(DEFAULT_TTL)}, one day); 0: keep nothing, as beanstalkd "
                       "[TUBESERVER_RESULT_TTL]")
    track.add_argument("--result-memory", type=_result_memory, metavar="BYTES",
                       help=f"memory all kept records may use, results and reasons included "
                       f"(default {DEFAULT_MEMORY}); the oldest go first "
                       "[TUBESERVER_RESULT_MEMORY]")
    flow = p.add_argument_group(
        "flow control", "Schedules, unique jobs, dependencies and tube limits are set by "
        "clients (see protocol.md); kept in the log with -b.")
    flow.add_argument("--timezone", type=_timezone, metavar="NAME",
                      help="read schedules' cron times in this IANA time zone, daylight saving "
                      "included (default: UTC) [TUBESERVER_TIMEZONE]")
    auth = p.add_argument_group(
        "authentication", "With an auth file, a connection must send `auth <token>` before "
        "anything else, and may then use only the tubes and commands its token grants "
        "(produce, consume, inspect, admin, by tube name pattern; see protocol.md). The HTTP "
        "endpoint then takes the same tokens as `Authorization: Bearer`. SIGHUP reloads the "
        "file; connections keep the rights they had until they `auth` again.")
    auth.add_argument("--auth-file", type=_path, metavar="FILE",
                      help="tokens (as SHA-256 hashes) and their rights, in TOML (default: "
                      "none, anyone who connects may do anything, as in beanstalkd) "
                      "[TUBESERVER_AUTH_FILE]")
    auth.add_argument("--auth-deadline", type=_auth_deadline, metavar="SECONDS",
                      help=f"with --auth-file, a connection that has not authenticated this "
                      f"long after it opened is closed, idle or not; until then it may buffer "
                      f"{PREAUTH_BUFFER} bytes of input (default {AUTH_DEADLINE:g}; 0: no "
                      "deadline) "
                      "[TUBESERVER_AUTH_DEADLINE]")
    auth.add_argument("--new-token", metavar="NAME",
                      help="make a token: print it on stderr (shown once, never stored) and "
                      "its [[token]] table for the auth file on stdout, then exit "
                      "(`tubeserver --new-token web >> auth.toml`, then fill in its rights)")
    ops = p.add_argument_group(
        "HTTP endpoint", "Prometheus metrics, health checks, a JSON API and the dashboard, "
        "from the same process (needs the `http` extra: hypercorn, prometheus-client). "
        "Without --auth-file, anyone who reaches it can delete jobs.")
    ops.add_argument("--http", type=_http, metavar="[ADDR:]PORT",
                     help="serve HTTP on ADDR:PORT (default address 127.0.0.1; off unless "
                     "given) [TUBESERVER_HTTP]")
    tls = p.add_argument_group(
        "TLS", "With --tls-cert and --tls-key, TCP clients must speak TLS (1.2 or later) and "
        "the HTTP endpoint serves HTTPS with the same certificate; the protocol inside is "
        "unchanged. A unix: listener stays plain. The files are read once, at start-up: "
        "a renewed certificate needs a restart. A connection that has not finished its "
        f"handshake after {HANDSHAKE_TIMEOUT:g} seconds is closed.")
    tls.add_argument("--tls-cert", type=_file, metavar="FILE",
                     help="the server's certificate (PEM), followed by any intermediate "
                     "ones [TUBESERVER_TLS_CERT]")
    tls.add_argument("--tls-key", type=_file, metavar="FILE",
                     help="the certificate's private key (PEM, unencrypted) "
                     "[TUBESERVER_TLS_KEY]")
    tls.add_argument("--tls-client-ca", type=_file, metavar="FILE",
                     help="require a client certificate signed by a CA in FILE (PEM), on the "
                     "protocol port and the HTTP endpoint [TUBESERVER_TLS_CLIENT_CA]")
    ops.add_argument("--http-allow-hosts", type=_hosts, metavar="NAMES",
                     help="without --auth-file, HTTP answers only requests whose Host is an IP "
                     "address or localhost (a defence against DNS rebinding); these "
                     "comma-separated names are accepted too [TUBESERVER_HTTP_ALLOW_HOSTS]")
    caps = p.add_argument_group(
        "limits", "Caps for a server that untrusted or careless clients can reach. Each is "
        "off or generous by default; a server started without them answers as beanstalkd "
        "does. See README, Limits.")
    caps.add_argument("--max-connections", type=_max_connections, metavar="N",
                      help="refuse connections beyond N open ones with TOO_MANY_CONNECTIONS, "
                      "then close them (default 0: no cap) [TUBESERVER_MAX_CONNECTIONS]")
    caps.add_argument("--max-jobs", type=_max_jobs, metavar="N",
                      help="answer OUT_OF_MEMORY to any put (and skip a schedule's firing) "
                      "while N jobs are live (default 0: no cap) [TUBESERVER_MAX_JOBS]")
    caps.add_argument("--max-memory", type=_max_memory, metavar="SIZE",
                      help="the same past SIZE bytes of jobs (512M, 2G), counted as each live "
                      "job's body plus 300 bytes (default 0: no cap) [TUBESERVER_MAX_MEMORY]")
    caps.add_argument("--max-connection-buffer", dest="connection_buffer", type=_buffer,
                      metavar="SIZE",
                      help="bound each connection's unparsed input and its unsent replies to "
                      f"SIZE: a client that sends without reading is paused (default "
                      f"{DEFAULT_BUFFER >> 20}M plus the max job size; at least the max job "
                      "size plus 384K) [TUBESERVER_MAX_CONNECTION_BUFFER]")
    caps.add_argument("--stall-timeout", type=_stall, metavar="SECONDS",
                      help="close a connection that sent part of a command (a line or a "
                      "body) and then nothing for SECONDS; idle ones and ones waiting in a "
                      "reserve are never closed (default 0: off) [TUBESERVER_STALL_TIMEOUT]")
    p.add_argument("-V", "--verbose", action="count",
                   help="log connections; twice also logs every command "
                   "[TUBESERVER_VERBOSE=N]")
    p.add_argument("-v", "--version", action="version",
                   version=f"tubeserver {__version__}, {BUILD}",
                   help="print the version and whether its core is compiled, and exit")
    return p


def parse_config(argv: Sequence[str], environ: dict[str, str]) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.fsync_ms is not None and args.no_fsync:
        parser.error("-f/--fsync-ms and -F/--no-fsync contradict each other; give one")
    given = {dest for dest in _LOG_ONLY if getattr(args, dest) is not None}
    if given and args.wal_dir is None and "TUBESERVER_WAL_DIR" not in environ:
        print("tubeserver: -f, -F and -s have no effect without -b/--wal-dir",
              file=sys.stderr)
    # -f and -F are one setting: either on the command line overrides both variables.
    fsync_from_cli = args.fsync_ms is not None or args.no_fsync is not None
    for var, dest, convert, default in _SETTINGS:
        if getattr(args, dest) is not None:
            continue
        raw = environ.get(var)
        if raw is None or (fsync_from_cli and dest in ("fsync_ms", "no_fsync")):
            setattr(args, dest, default)
            continue
        try:
            setattr(args, dest, convert(raw))
        except argparse.ArgumentTypeError as e:
            parser.error(f"{var}: {e}")
    size = args.max_job_size
    if size > JOB_SIZE_CAP:
        print(f"tubeserver: max job size {size} is above {JOB_SIZE_CAP}; using {JOB_SIZE_CAP}",
              file=sys.stderr)
        size = JOB_SIZE_CAP
    if args.no_fsync and args.fsync_ms is not None:
        parser.error("TUBESERVER_FSYNC_MS and TUBESERVER_NO_FSYNC contradict each other; "
                     "set one")
    if args.http is not None and not _http_extra():
        parser.error("--http needs hypercorn and prometheus-client: "
                     "pip install 'tubeserver[http]'")
    tls = _tls(parser, args.tls_cert, args.tls_key, args.tls_client_ca)
    if args.auth_file is not None:
        try:
            load_tokens(args.auth_file)
        except AuthFileError as e:
            parser.error(str(e))
    fsync_ms = None if args.no_fsync else (
        DEFAULT_FSYNC_MS if args.fsync_ms is None else args.fsync_ms)
    floor = buffer_floor(size)
    if args.connection_buffer and args.connection_buffer < floor:
        parser.error(f"--max-connection-buffer {args.connection_buffer} is below {floor}, "
                     "the max job size plus 384K: a whole job must fit")
    caps = Caps(max_connections=args.max_connections, max_jobs=args.max_jobs,
                max_memory=args.max_memory, connection_buffer=args.connection_buffer,
                stall_timeout=args.stall_timeout)
    return Config(listen=args.listen, port=args.port, max_job_size=size, verbose=args.verbose,
                  wal_dir=args.wal_dir, fsync_ms=fsync_ms, segment_size=args.segment_size,
                  wal_repair=args.wal_repair, result_ttl=args.result_ttl,
                  result_memory=args.result_memory, timezone=args.timezone, http=args.http,
                  auth_file=args.auth_file, auth_deadline=args.auth_deadline,
                  http_allow_hosts=args.http_allow_hosts,
                  tls=tls, caps=caps)


def _tls(parser: argparse.ArgumentParser, cert: str | None, key: str | None,
         client_ca: str | None) -> Tls | None:
    """The TLS settings, their files read now: a problem with them is a usage error."""
    if cert is None and key is None:
        if client_ca is not None:
            parser.error("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        parser.error("--tls-cert and --tls-key go together; give both")
    try:
        return load_tls(cert, key, client_ca)
    except TlsError as e:
        parser.error(str(e))


def _http_extra() -> bool:
    return all(importlib.util.find_spec(name) is not None
               for name in ("hypercorn", "prometheus_client"))


def _print_token(argv: Sequence[str]) -> int | None:
    """--new-token NAME: the one thing done without a server. None when not asked."""
    args = build_parser().parse_args(argv)
    if args.new_token is None:
        return None
    token = new_token()
    try:
        table = entry(args.new_token, token)
    except ValueError as e:
        print(f"tubeserver: {e}", file=sys.stderr)
        return 2
    print(f"tubeserver: token for {args.new_token!r} (shown once; give it to the client and "
          f"keep it secret):\n{token}", file=sys.stderr)
    print(table, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    done = _print_token(args)
    if done is not None:
        return done
    config = parse_config(args, dict(os.environ))
    level = logging.DEBUG if config.verbose >= 2 else logging.INFO if config.verbose else (
        logging.WARNING)
    logging.basicConfig(level=level, format="tubeserver: %(message)s", stream=sys.stderr)
    try:
        trio.run(serve, config)
    except (ListenError, WalError, AuthFileError) as e:
        print(f"tubeserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
