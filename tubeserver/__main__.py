"""Command line: argv and TUBESERVER_* variables -> Config -> serve.

Flags follow beanstalkd's (-l -p -z -V -v -h) with long forms; every flag can also come from
an environment variable, and the command line wins. Bad input prints usage and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import trio

from . import __version__
from .limits import DEFAULT_LISTEN, DEFAULT_MAX_JOB_SIZE, DEFAULT_PORT, JOB_SIZE_CAP
from .server import Config, ListenError, serve

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
]


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
    p.add_argument("-V", "--verbose", action="count",
                   help="log connections; twice also logs every command "
                   "[TUBESERVER_VERBOSE=N]")
    p.add_argument("-v", "--version", action="version", version=f"tubeserver {__version__}",
                   help="print the version and exit")
    return p


def parse_config(argv: Sequence[str], environ: dict[str, str]) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    for var, dest, convert, default in _SETTINGS:
        if getattr(args, dest) is not None:
            continue
        raw = environ.get(var)
        if raw is None:
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
    return Config(listen=args.listen, port=args.port, max_job_size=size, verbose=args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv, dict(os.environ))
    level = logging.DEBUG if config.verbose >= 2 else logging.INFO if config.verbose else (
        logging.WARNING)
    logging.basicConfig(level=level, format="tubeserver: %(message)s", stream=sys.stderr)
    try:
        trio.run(serve, config)
    except ListenError as e:
        print(f"tubeserver: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
