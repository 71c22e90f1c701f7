"""Entry point of the ``tubeworker`` script and ``python -m tubeclient.harness``.

Parses the command line (exit 2 with the usage on bad input), then runs the supervisor under
``trio.run``. The exit status is 0 after a normal stop (signal, --max-jobs, --burst drained),
1 when a server could not be reached in --burst mode, 130 on a Ctrl-C before the signal
handlers are installed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import trio

from .cli import config_from
from .supervisor import Supervisor


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from(sys.argv[1:] if argv is None else argv)
    try:
        return trio.run(Supervisor(config).run)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
