"""Command line of tubeworker: argparse flags, each with a TUBEWORKER_* fallback.

Theory of operation. Everything before ``--`` is options, everything after it is the command
(without ``--``, the first non-option word starts the command). A flag given on the command
line wins over its environment variable, which wins over the default. Every value is checked
here, before anything connects: a bad value prints the usage and the problem on stderr and
exits with status 2, never a traceback. The result is a frozen `supervisor.Config`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from ..commands import check_tube
from ..credentials import TOKEN_HELP, client_context, token_from
from . import metrics
from .outcome import DELAY_MAX, Policy
from .supervisor import Config

T = TypeVar("T")
DEFAULT_PORT = 11300

DESCRIPTION = """\
Run a command (or a Python function) for every job reserved from beanstalkd-compatible
servers. The job body goes to the child's stdin; the job's id, tube, server, priority, TTR,
attempt and kill deadline go to TUBEWORKER_JOB_ID, TUBEWORKER_TUBE, TUBEWORKER_SERVER,
TUBEWORKER_PRIORITY, TUBEWORKER_TTR, TUBEWORKER_ATTEMPT and TUBEWORKER_DEADLINE; {id}, {tube}
and {server} in the command's arguments are replaced per job.

Exit 0 deletes the job; an exit code listed in --bury-exit-codes buries it at once; any other
failure (non-zero exit, death by a signal, killed at the deadline) releases it with
exponential backoff until the attempt budget (--max-attempts per kick) is spent, then buries
it. The child runs in its own process group, which gets SIGTERM, then SIGKILL after
--kill-grace, before the job's TTR runs out.

Results and checkpoints (tubeserver; against beanstalkd jobs are deleted and buried as
above): a job that succeeds is answered with `finish` and its result, the last
--result-bytes of the command's stdout or a --call function's return value (msgpack); a
job that is buried, with `fail` and the stderr tail (a function's traceback) as the
reason. A command may leave checkpoints through the file descriptor named by
TUBEWORKER_CHECKPOINT_FD, each record its length in decimal, a newline, then the bytes
(a function: job.checkpoint(value), if it takes a `job` argument). Each is stored with
`checkpoint`, which restarts the job's TTR and run limit (no --touch needed); a retried
job's child finds the last one in the file named by TUBEWORKER_CHECKPOINT (a function:
job.last_checkpoint).
"""

EPILOG = """\
signals: TERM/INT stop reserving at once and wait up to --shutdown-grace for the running
children (their jobs are answered as usual), then kill them and give their jobs back by
closing the connection, which the server does not count as a failed attempt (a second
TERM/INT kills at once); QUIT waits for the running jobs; USR1 kills the running children
(counted as failures); USR2 pauses reserving, CONT resumes; HUP (with --call) starts a new
forkserver, so changed code is imported anew, and retires the old one once its children end.

metrics (--metrics-port): tubeworker_jobs_total{outcome=succeeded|retried|buried|released|
lost|error|bug}, tubeworker_job_run_seconds (histogram), tubeworker_children_running,
tubeworker_concurrency, tubeworker_reserves_total{result=jobs|empty},
tubeworker_jobs_reserved_total, tubeworker_reserve_wait_seconds (histogram),
tubeworker_reconnects_total{server}.

example: tubeworker -s 127.0.0.1:11300 -t render -c 4 -- ./render.sh --job {id}
"""


class UsageError(Exception):
    pass


# Defaults as a user would write them: --help shows them and `parse` converts them exactly
# like user input, so the help text and the behaviour cannot disagree.
DEFAULTS: dict[str, str] = {
    "servers": f"127.0.0.1:{DEFAULT_PORT}",
    "tubes": "default",
    "concurrency": "1",
    "kill_grace": "5",
    "max_attempts": "5",
    "backoff_base": "15",
    "backoff_cap": "3600",
    "shutdown_grace": "25",
    "log_format": "text",
    "jitter": "1",
    "touch": "0",
    "burst": "0",
    "shell": "0",
    "msgpack": "0",
    "result_bytes": "4096",
    "metrics_addr": "127.0.0.1",
}


def _env_name(dest: str) -> str:
    return "TUBEWORKER_" + dest.upper()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _server(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if sep else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    number = int(port) if port else DEFAULT_PORT
    if not 0 < number < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host, number


def _exit_codes(text: str) -> frozenset[int]:
    codes = frozenset(int(part) for part in text.split(",") if part.strip())
    if any(not 1 <= c <= 255 for c in codes):
        raise ValueError("exit codes must be 1-255")
    return codes


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value < 65536:
        raise ValueError(f"must be a port number 0-65535 (0: any free port), got {value}")
    return value


def _address(text: str) -> str:
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]  # [::1] as in a URL
    if not value:
        raise ValueError("empty address")
    return value


def _module(text: str) -> str:
    if not all(part.isidentifier() for part in text.split(".")):
        raise ValueError(f"not a module name: {text!r}")
    return text


def _file(text: str) -> str:
    if not text.strip():
        raise ValueError("empty file name")
    return text


def _tube(text: str) -> str:
    return check_tube(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tubeworker", usage="%(prog)s [options] -- COMMAND [ARG ...]\n"
        "       %(prog)s [options] --call package.module:function",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument

    def opt(*flags: str, env_note: str = "", **kw: Any) -> None:
        """An option settable from TUBEWORKER_<DEST>; its help gains the default (for
        options that take a value) and the variable's name."""
        action = add(*flags, **kw)
        shown = DEFAULTS.get(action.dest) if action.nargs != 0 else None
        suffix = f"env {_env_name(action.dest)}{env_note}"
        action.help = f"{action.help} ({'' if shown is None else f'default: {shown}; '}{suffix})"

    opt("-s", "--server", dest="servers", action="append", metavar="HOST:PORT",
        env_note=", comma-separated", help="server to reserve from; repeat for several")
    opt("-t", "--tube", dest="tubes", action="append", metavar="NAME",
        env_note=", comma-separated", help="tube to watch; repeat for several")
    opt("-c", "--concurrency", metavar="N", help="children running at once")
    opt("--timeout", metavar="SECONDS",
        help="hard limit on a child's run time; required with --touch, otherwise the limit "
        "is the job's TTR minus 1 s minus --kill-grace")
    opt("--touch", action="store_const", const="1", default=None,
        help="touch the job while its child runs, up to --timeout")
    add("--no-touch", dest="touch", action="store_const", const="0", help="do not touch")
    opt("--kill-grace", metavar="SECONDS",
        help="SIGTERM to SIGKILL delay for a child's process group")
    opt("--max-attempts", metavar="N",
        help="failed attempts before a job is buried; each kick grants as many again")
    opt("--backoff-base", metavar="SECONDS",
        help="release delay after the first failure, doubling after each further one")
    opt("--backoff-cap", metavar="SECONDS", help="largest release delay")
    opt("--jitter", action="store_const", const="1", default=None,
        help="equal jitter, on unless --no-jitter: half the delay fixed, half random")
    add("--no-jitter", dest="jitter", action="store_const", const="0",
        help="exact exponential delays")
    opt("--bury-exit-codes", metavar="LIST",
        help="comma-separated exit codes meaning permanent failure: bury at once")
    opt("--shutdown-grace", metavar="SECONDS",
        help="how long TERM/INT waits for running children before killing them")
    opt("--max-jobs", metavar="N",
        help="stop reserving after this many job runs (each attempt counts), wait for "
        "the running ones, exit")
    opt("--max-idle-time", metavar="SECONDS",
        help="exit once no job has been reserved or running for this long")
    opt("--burst", action="store_const", const="1", default=None,
        help="exit once the watched tubes have no ready or delayed jobs and nothing runs")
    opt("--log-format", metavar="text|json",
        help="one line per job outcome, as logfmt text or JSON")
    opt("--result-tube", metavar="NAME",
        help="put a msgpack record (id, tube, exit status, duration, stdout tail) per "
        "deleted job into this tube on the job's server")
    opt("--result-bytes", metavar="N",
        help="with tubeserver, finish a successful command's job with the last N bytes of "
        "its stdout as the result")
    opt("--no-result", action="store_const", const="1", default=None,
        help="with tubeserver, keep no result: successful jobs are deleted")
    opt("--failure-tube", metavar="NAME",
        help="put a msgpack record with the stderr tail per buried job into this tube")
    opt("--shell", action="store_const", const="1", default=None,
        help="run COMMAND (its words joined by spaces) with /bin/sh -c; placeholders are "
        "shell-quoted")
    opt("--call", metavar="MODULE:FUNCTION",
        help="instead of COMMAND, call this Python function with the body in a child "
        "forked per job from a forkserver that imported it once; returning exits 0, "
        "sys.exit(n) exits n, an exception exits 1")
    opt("--preload", dest="preload", action="append", metavar="MODULE",
        env_note=", comma-separated",
        help="with --call, import this module in the forkserver too; repeat for several "
        "(SIGHUP restarts the forkserver to load changed code)")
    opt("--msgpack", action="store_const", const="1", default=None,
        help="with --call, decode the body with msgpack first")
    opt("--metrics-port", metavar="PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (0: any free port; the "
        "event=metrics line says which); needs prometheus-client, "
        f"{metrics.INSTALL_HINT}")
    opt("--metrics-addr", metavar="ADDR", help="address the metrics server listens on")
    opt("--tls", action="store_const", const="1", default=None,
        help="speak TLS to the servers (tubeserver --tls-cert), trusting the system's CAs")
    opt("--tls-ca", metavar="FILE",
        help="speak TLS, trusting the CA certificates in FILE (PEM) instead")
    opt("--tls-cert", metavar="FILE",
        help="speak TLS and present this client certificate (PEM; with --tls-key), for a "
        "server started with --tls-client-ca")
    opt("--tls-key", metavar="FILE", help="the client certificate's private key (PEM)")
    opt("--token-file", metavar="FILE",
        help="authenticate with the token in FILE (tubeserver --auth-file); or put the token "
        f"itself in TUBEWORKER_TOKEN. There is no --token: {TOKEN_HELP}")
    # Named so that argparse does not take `--token SECRET` for an abbreviation of
    # --token-file (and print the secret as a file name): refused in `parse`.
    add("--token", dest="token_given", help=argparse.SUPPRESS)
    add("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def _get(ns: argparse.Namespace, env: Mapping[str, str], dest: str,
         convert: Callable[[str], T]) -> T | None:
    """The flag's value, else TUBEWORKER_<DEST>, else DEFAULTS (None when it has none)."""
    raw = getattr(ns, dest)
    source = f"--{dest.replace('_', '-')}"
    if raw is None:
        raw = env.get(_env_name(dest))
        source = _env_name(dest)
    if raw is None:
        raw = DEFAULTS.get(dest)
        source = "default"
    if raw is None:
        return None
    try:
        return convert(raw)
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None


def _set(ns: argparse.Namespace, env: Mapping[str, str], dest: str,
         convert: Callable[[str], T]) -> T:
    """`_get` for an option that has a default."""
    value = _get(ns, env, dest, convert)
    assert value is not None, dest
    return value


def _list(ns: argparse.Namespace, env: Mapping[str, str], dest: str,
          convert: Callable[[str], T]) -> list[T]:
    values: list[str] | None = getattr(ns, dest)
    source = f"--{dest.rstrip('s')}"
    if values is None:
        raw = env.get(_env_name(dest))
        source = _env_name(dest)
        values = [v for v in raw.split(",") if v.strip()] if raw else None
    if not values:
        if dest not in DEFAULTS:
            return []
        values, source = DEFAULTS[dest].split(","), "default"
    try:
        return [convert(v.strip()) for v in values]
    except ValueError as e:
        raise UsageError(f"{source}: {e}") from None


def parse(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Config:
    """The Config for `argv` (without the program name); UsageError on bad input."""
    env = os.environ if env is None else env
    args = list(argv)
    command: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, command = args[:cut], args[cut + 1:]
    parser = build_parser()
    ns = parser.parse_args(args)
    command = list(ns.command) + command
    call = _get(ns, env, "call", str)
    use_msgpack = _set(ns, env, "msgpack", _bool)
    if call is not None:
        if command:
            raise UsageError("give either --call or a COMMAND, not both")
        module, sep, func = call.partition(":")
        if not (module and sep and func):
            raise UsageError(f"--call: expected package.module:function, got {call!r}")
    elif not command:
        raise UsageError("no COMMAND given (put it after --), and no --call")
    elif use_msgpack:
        raise UsageError("--msgpack only applies to --call")
    preload = tuple(_list(ns, env, "preload", _module))
    if preload and call is None:
        raise UsageError("--preload only applies to --call")
    touch = _set(ns, env, "touch", _bool)
    timeout = _get(ns, env, "timeout", _seconds)
    if touch and timeout is None:
        raise UsageError("--touch needs --timeout, so a stuck child cannot hold a job forever")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be > 0")
    no_result = bool(_get(ns, env, "no_result", _bool))
    if no_result and ns.result_bytes is not None:
        raise UsageError("give either --result-bytes or --no-result, not both")
    max_idle_time = _get(ns, env, "max_idle_time", _seconds)
    if max_idle_time is not None and max_idle_time <= 0:
        raise UsageError("--max-idle-time must be > 0")
    metrics_port = _get(ns, env, "metrics_port", _port)
    metrics_addr = _set(ns, env, "metrics_addr", _address)
    if metrics_port is None and (ns.metrics_addr is not None
                                 or _env_name("metrics_addr") in env):
        raise UsageError("--metrics-addr only applies with --metrics-port")
    if metrics_port is not None and not metrics.available():
        raise UsageError("--metrics-port needs prometheus-client, which is not installed: "
                         f"{metrics.INSTALL_HINT}")
    log_format = _set(ns, env, "log_format", str)
    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format: expected text or json, got {log_format!r}")
    cap = _set(ns, env, "backoff_cap", _seconds)
    if cap > DELAY_MAX:
        raise UsageError(f"--backoff-cap: at most {DELAY_MAX}")
    policy = Policy(
        max_attempts=_set(ns, env, "max_attempts", _positive_int),
        backoff_base=_set(ns, env, "backoff_base", _seconds),
        backoff_cap=cap,
        jitter=_set(ns, env, "jitter", _bool),
        bury_exit_codes=_get(ns, env, "bury_exit_codes", _exit_codes) or frozenset(),
    )
    if ns.token_given is not None:
        raise UsageError(f"there is no --token: {TOKEN_HELP}; use --token-file FILE or "
                         "TUBEWORKER_TOKEN")
    try:
        tls = client_context(bool(_get(ns, env, "tls", _bool)), _get(ns, env, "tls_ca", _file),
                             _get(ns, env, "tls_cert", _file), _get(ns, env, "tls_key", _file))
        token = token_from(ns.token_file, env, "TUBEWORKER_TOKEN", _env_name("token_file"))
    except ValueError as e:
        raise UsageError(str(e)) from None
    opt_tube: Callable[[str], str | None] = _tube
    return Config(
        command=tuple(command),
        servers=tuple(_list(ns, env, "servers", _server)),
        tubes=tuple(dict.fromkeys(_list(ns, env, "tubes", _tube))),
        concurrency=_set(ns, env, "concurrency", _positive_int),
        shell=_set(ns, env, "shell", _bool),
        call=call,
        msgpack=use_msgpack,
        preload=preload,
        timeout=timeout,
        touch=touch,
        kill_grace=_set(ns, env, "kill_grace", _seconds),
        policy=policy,
        shutdown_grace=_set(ns, env, "shutdown_grace", _seconds),
        max_jobs=_get(ns, env, "max_jobs", _positive_int),
        burst=_set(ns, env, "burst", _bool),
        max_idle_time=max_idle_time,
        log_format="json" if log_format == "json" else "text",
        result_bytes=None if no_result else _set(ns, env, "result_bytes", _count),
        result_tube=_get(ns, env, "result_tube", opt_tube),
        failure_tube=_get(ns, env, "failure_tube", opt_tube),
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
        tls=tls,
        token=token,
    )


def fail(message: str) -> NoReturn:
    build_parser().error(message)


def config_from(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Config:
    """`parse`, turning a UsageError into argparse's usage + message + exit status 2."""
    try:
        return parse(argv, env)
    except UsageError as e:
        fail(str(e))


__all__ = ["UsageError", "build_parser", "config_from", "parse"]
