"""tubectl: the operator's command line for tubeserver (and beanstalkd) servers.

Theory of operation. argparse reads the command line; the options every subcommand takes
(-s, --json, --io-timeout) may come before or after the subcommand's name. Everything is
checked here, before anything connects: a bad value, a job id with several servers (ids are
per server), `clear` without --yes when stdin is no terminal to ask on; each exits with
status 2 and the usage. Then the subcommand (ctl_run.py) runs on the servers
(ctl_servers.py) and prints (ctl_view.py): status 0, or 1 when a server said NOT_FOUND or
another error, or could not be reached. Ctrl-C ends it quietly (status 130; `top` 0); no
path ends in a traceback.
"""

from __future__ import annotations

import argparse
import io
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, Final

from .admin import CLEAR_STATES, LIST_MAX, LIST_STATES, OFFSET_MAX
from .commands import check_tube
from .credentials import TOKEN_HELP, client_context, token_from
from .ctl_run import HANDLERS, Context
from .ctl_servers import DEFAULT_SERVER, Servers, parse_server
from .job import (
    DEFAULT_DELAY,
    DEFAULT_IO_TIMEOUT,
    DEFAULT_PRIORITY,
    DEFAULT_TTR,
    DEFAULT_TUBE,
    RESERVE_TIMEOUT_MAX,
    U32_MAX,
    U64_MAX,
    Address,
)

ENV_SERVERS: Final = "TUBECTL_SERVERS"
ENV_TOKEN: Final = "TUBECTL_TOKEN"
ENV_TOKEN_FILE: Final = "TUBECTL_TOKEN_FILE"
# Subcommands that name a job by id, or store one: one server, since ids are per server.
ONE_SERVER: Final = {"status", "delete", "wait-result", "put"}

DESCRIPTION = """\
Look at and act on beanstalkd-compatible job servers: tubeserver, and beanstalkd for what
its protocol has. Each subcommand runs on every server given (-s, repeatable; else
TUBECTL_SERVERS, comma-separated; else 127.0.0.1:11300), and each row or JSON object says
which server it is from. Job ids are per server: subcommands that take an id (and put) need
exactly one server.
"""

EPILOG = """\
output: tables for people; --json prints one JSON document (top: one line per frame) with
the protocol's keys (pri, time-left, current-jobs-ready, ...) and "server" in every object.

exit status: 0 done; 1 a server answered NOT_FOUND or another error, lacks a tubeserver
extension, or could not be reached (one line each on stderr: "tubectl: cannot connect to
127.0.0.1:11300: connection refused"); 2 bad usage. With several servers, NOT_FOUND from
some while others answered is not an error (a tube may exist on one server only).

example: tubectl -s 10.0.0.1:11300 -s 10.0.0.2:11300 tubes
"""


def _number(name: str, low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, not {text!r}"
                                             ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be between {low} and {high}, not {value}")
        return value

    convert.__name__ = name  # argparse names the type in its messages
    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"seconds must be positive, not {text!r}")
    return value


def _tube(text: str) -> str:
    try:
        return check_tube(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _server(text: str) -> tuple[Address, bool]:
    try:
        return parse_server(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


JOB_ID = _number("job id", 0, U64_MAX)
U32 = _number("value", 0, U32_MAX)


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    """-s, --json and --io-timeout, on the main parser and on each subcommand's (where
    their defaults are left out, so that the main parser's stay unless given again)."""
    keep: Any = argparse.SUPPRESS
    parser.add_argument(
        "-s", "--server", dest="servers" if top else "more_servers", action="append",
        type=_server, metavar="HOST:PORT", default=[] if top else keep,
        help=f"a server (repeatable): HOST:PORT, [IPv6]:PORT, HOST or unix:/path, or "
             f"tls://HOST:PORT for one that speaks TLS; default ${ENV_SERVERS} "
             f"(comma-separated), else {DEFAULT_SERVER}")
    parser.add_argument("--json", action="store_true", default=False if top else keep,
                        help="print JSON for scripts instead of tables")
    parser.add_argument(
        "--io-timeout", type=_seconds, metavar="SECONDS",
        default=DEFAULT_IO_TIMEOUT if top else keep,
        help=f"give up on a server silent this long (default {DEFAULT_IO_TIMEOUT:g}; "
             "connecting: at most 5)")
    parser.add_argument("--tls", action="store_true", default=False if top else keep,
                        help="speak TLS to every TCP server, trusting the system's CAs "
                             "[TUBECTL_TLS=1]")
    parser.add_argument("--tls-ca", metavar="FILE", default=None if top else keep,
                        help="trust the CA certificates in FILE (PEM) instead; implies "
                             "--tls [TUBECTL_TLS_CA]")
    parser.add_argument("--tls-cert", metavar="FILE", default=None if top else keep,
                        help="present this client certificate (PEM, with --tls-key); "
                             "implies --tls [TUBECTL_TLS_CERT]")
    parser.add_argument("--tls-key", metavar="FILE", default=None if top else keep,
                        help="the client certificate's private key (PEM) [TUBECTL_TLS_KEY]")
    # Named so that argparse does not take `--token SECRET` for an abbreviation of
    # --token-file (and print the secret as a file name): refused in `_access`.
    parser.add_argument("--token", dest="token_given", default=None if top else keep,
                        help=argparse.SUPPRESS)
    parser.add_argument("--token-file", metavar="FILE", default=None if top else keep,
                        help=f"authenticate with the token in FILE [{ENV_TOKEN_FILE}]; or "
                             f"put the token in ${ENV_TOKEN}. No --token: {TOKEN_HELP}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tubectl", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=summary + (
            "\n\n" + details if details else ""),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, top=False)
        p.set_defaults(parser=p)  # so that checks after parsing show this usage
        return p

    p = command("stats", "server statistics, a column per server",
                "Shows the main figures; --all shows every key of `stats`.")
    p.add_argument("--all", action="store_true", help="every key, not only the main ones")

    command("tubes", "every tube: jobs by state and the oldest ready job's age",
            "Columns: tube, ready, reserved, delayed, buried, waiting (jobs waiting for\n"
            "parents), oldest ready (age of the oldest ready job, by put time). From\n"
            "tubeserver's tube-info; against beanstalkd from stats-tube, where waiting and\n"
            "oldest are shown as \"-\" (null in JSON).")

    p = command("top", "the tubes table, redrawn every --interval seconds (Ctrl-C quits)",
                "A live view of `tubes`. With --json: one line of JSON per frame.")
    p.add_argument("--interval", type=_seconds, default=2.0, metavar="SECONDS",
                   help="seconds between frames (default 2)")
    p.add_argument("--iterations", type=_number("iterations", 1, U32_MAX), metavar="N",
                   help="stop after N frames (default: until Ctrl-C)")

    p = command("jobs", "the jobs of a tube in one state, a page at a time (list-jobs)",
                "Ready jobs in the order reserve takes them, delayed by when they become\n"
                "ready, buried in kick order, reserved by when their TTR ends, waiting by\n"
                "id. A tubeserver extension.")
    p.add_argument("tube", type=_tube, metavar="TUBE")
    p.add_argument("--state", choices=LIST_STATES, default="ready",
                   help="which jobs (default ready)")
    p.add_argument("--offset", type=_number("offset", 0, OFFSET_MAX), default=0, metavar="N",
                   help=f"skip the first N (0 to {OFFSET_MAX})")
    p.add_argument("--limit", type=_number("limit", 1, LIST_MAX), default=100, metavar="N",
                   help=f"show at most N (1 to {LIST_MAX}, default 100)")

    p = command("peek", "show a job without reserving it: by id, or a tube's next ready, "
                        "next delayed or oldest buried one",
                "The body is shown as text when it is UTF-8, else as hex.")
    p.add_argument("id", type=JOB_ID, nargs="?", metavar="ID",
                   help="the job's id (one server)")
    which = p.add_mutually_exclusive_group()
    for state in ("ready", "delayed", "buried"):
        which.add_argument(f"--{state}", dest="which", action="store_const", const=state,
                           help=f"the tube's {'oldest' if state == 'buried' else 'next'} "
                                f"{state} job, on every server")
    p.add_argument("--tube", type=_tube, metavar="TUBE",
                   help=f"the tube of --ready/--delayed/--buried (default: {DEFAULT_TUBE})")

    p = command("status", "a job's state, counters and times, live or finished (job-status)",
                "Also finished jobs whose record the server keeps. A tubeserver extension.")
    p.add_argument("id", type=JOB_ID, metavar="ID")

    p = command("kick", "kick buried jobs of a tube back to ready (or, with none buried, "
                        "delayed ones); --job kicks one job")
    p.add_argument("tube", type=_tube, nargs="?", metavar="TUBE")
    p.add_argument("bound", type=_number("N", 1, U64_MAX), nargs="?", default=1, metavar="N",
                   help="at most N jobs per server (default 1)")
    p.add_argument("--job", type=JOB_ID, metavar="ID", help="kick this job (one server)")

    p = command("delete", "delete jobs by id (one server)")
    p.add_argument("ids", type=JOB_ID, nargs="+", metavar="ID")

    p = command("clear", "delete every job of a tube in one state (clear-tube)",
                "Asks for confirmation on a terminal unless --yes; without a terminal\n"
                "--yes is required. Reserved jobs belong to their workers and are never\n"
                "cleared. A tubeserver extension.")
    p.add_argument("tube", type=_tube, metavar="TUBE")
    p.add_argument("--state", choices=CLEAR_STATES, required=True,
                   help="which jobs to delete")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")

    p = command("pause", "hold back reserves from a tube for SECONDS (0 ends a pause)")
    p.add_argument("tube", type=_tube, metavar="TUBE")
    p.add_argument("seconds", type=_number("seconds", 0, U32_MAX), metavar="SECONDS")

    p = command("put", "put a job into a tube (one server); the body is BODY, else stdin")
    p.add_argument("tube", type=_tube, metavar="TUBE")
    p.add_argument("body", nargs="?", metavar="BODY", help="the body (UTF-8); default stdin")
    p.add_argument("--pri", type=U32, default=DEFAULT_PRIORITY, metavar="N",
                   help=f"priority, 0 most urgent (default {DEFAULT_PRIORITY})")
    p.add_argument("--delay", type=U32, default=DEFAULT_DELAY, metavar="SECONDS",
                   help="seconds before it is ready (default 0)")
    p.add_argument("--ttr", type=U32, default=DEFAULT_TTR, metavar="SECONDS",
                   help=f"seconds a worker may hold it (default {DEFAULT_TTR})")

    p = command("wait-result", "wait for a job to finish and print its result (or its "
                               "failure reason)",
                "Status 0 when it finished; 1 when it failed (buried), is still live after\n"
                "--timeout, or is unknown. A tubeserver extension.")
    p.add_argument("id", type=JOB_ID, metavar="ID")
    p.add_argument("--timeout", type=_number("timeout", 0, RESERVE_TIMEOUT_MAX),
                   default=RESERVE_TIMEOUT_MAX, metavar="SECONDS",
                   help="give up after SECONDS (0: answer at once; default: no limit)")

    command("schedules", "every schedule: spec, next and last firing, jobs made",
            "A tubeserver extension.")

    p = command("tail", "reserve jobs of a tube, print them, then release, delete or bury "
                        "them",
                "Takes up to --count jobs from each server, waiting --wait seconds for each.\n"
                "Released jobs are given back at the end, with their priority, so that\n"
                "the same job is not shown twice.")
    p.add_argument("tube", type=_tube, metavar="TUBE")
    action = p.add_mutually_exclusive_group()
    for name, text in (("release", "give them back (default)"), ("delete", "delete them"),
                       ("bury", "bury them")):
        action.add_argument(f"--{name}", dest="action", action="store_const", const=name,
                            help=text)
    p.add_argument("--count", type=_number("count", 1, 1000), default=1, metavar="N",
                   help="at most N jobs per server (default 1)")
    p.add_argument("--wait", type=_number("wait", 0, RESERVE_TIMEOUT_MAX), default=0,
                   metavar="SECONDS", help="seconds to wait for each job (default 0)")
    return parser


def _servers(parser: argparse.ArgumentParser, args: argparse.Namespace,
             environ: dict[str, str]) -> list[tuple[Address, bool]]:
    """The servers, each with whether it was named with tls://."""
    given: list[tuple[Address, bool]] = [*args.servers, *getattr(args, "more_servers", [])]
    if not given:
        text = environ.get(ENV_SERVERS, "").strip()
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                given.append(parse_server(part))
            except ValueError as e:
                parser.error(f"{ENV_SERVERS}: {e}")
    if not given:
        given = [parse_server(DEFAULT_SERVER)]
    # One entry per address: tls:// once is TLS.
    tls: dict[Address, bool] = {}
    for address, secure in given:
        tls[address] = tls.get(address, False) or secure
    return list(tls.items())


def _access(parser: argparse.ArgumentParser, args: argparse.Namespace,
            environ: dict[str, str], servers: Sequence[tuple[Address, bool]]
            ) -> tuple[list[ssl.SSLContext | None], str | None]:
    """Per server its TLS context (None: plain), and the token: flags, else TUBECTL_*
    variables. --tls and its files make every TCP server TLS; tls:// makes one (with the
    same files). A UNIX socket stays plain, as tubeserver serves it."""
    def value(flag: str | None, var: str) -> str | None:
        return flag if flag is not None else (environ.get(var) or None)

    if args.token_given is not None:
        parser.error(f"there is no --token: {TOKEN_HELP}; use --token-file FILE or "
                     f"{ENV_TOKEN}")
    try:
        everywhere = args.tls or _flag(environ.get("TUBECTL_TLS", ""))
        files = (value(args.tls_ca, "TUBECTL_TLS_CA"), value(args.tls_cert, "TUBECTL_TLS_CERT"),
                 value(args.tls_key, "TUBECTL_TLS_KEY"))
        everywhere = everywhere or any(files)
        context = None
        if everywhere or any(secure for _, secure in servers):
            context = client_context(True, *files)
        token = token_from(args.token_file, environ, ENV_TOKEN, ENV_TOKEN_FILE)
    except ValueError as e:
        parser.error(str(e))
    contexts = [context if (secure or everywhere) and not isinstance(address, str) else None
                for address, secure in servers]
    return contexts, token


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"TUBECTL_TLS: expected 1/0, true/false, yes/no or on/off, got {text!r}")


def _check(args: argparse.Namespace, servers: int, stdin: IO[bytes]) -> None:
    """What argparse alone cannot refuse: exit 2 with the subcommand's usage."""
    parser: argparse.ArgumentParser = args.parser
    name = args.command
    one = name in ONE_SERVER or (name == "peek" and args.id is not None) or (
        name == "kick" and args.job is not None)
    if one and servers != 1:
        what = "stores one job" if name == "put" else "takes a job id, and ids are per server"
        parser.error(f"{name} {what}: name exactly one server with -s ({servers} given)")
    if name == "peek" and (args.id is None) == (args.which is None):
        parser.error("peek takes an ID or one of --ready, --delayed, --buried")
    if name == "peek" and args.tube is not None and args.id is not None:
        parser.error("--tube goes with --ready, --delayed or --buried, not with an ID")
    if name == "peek" and args.tube is None:
        args.tube = DEFAULT_TUBE
    if name == "kick" and (args.tube is None) == (args.job is None):
        parser.error("kick takes a TUBE [N] or --job ID")
    if name == "tail" and args.action is None:
        args.action = "release"
    if name == "clear" and not args.yes and not stdin.isatty():
        parser.error("clear deletes jobs and stdin is not a terminal to confirm on: "
                     "pass --yes")


def main(argv: Sequence[str] | None = None) -> int:
    """Run tubectl; returns the exit status."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # a body can hold what the locale cannot
        sys.stdout.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    stdin = sys.stdin.buffer if sys.stdin is not None else io.BytesIO()
    environ = dict(os.environ)
    given = _servers(parser, args, environ)
    _check(args, len(given), stdin)
    tls, token = _access(parser, args, environ, given)
    servers = Servers([address for address, _ in given], args.io_timeout, tls=tls,
                      token=token)
    ctx = Context(servers, args.json, sys.stdout, sys.stderr, stdin)
    try:
        return HANDLERS[args.command](ctx, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, and let Python's own flush at
        # exit not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:  # a bug: still one line, as promised, naming it
        print(f"tubectl: unexpected error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        servers.close()


if __name__ == "__main__":
    sys.exit(main())
