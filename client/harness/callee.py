"""The child side of ``tubeworker --call module:function``: a fresh interpreter per job.

Run as ``python -m tubeclient.harness.callee [--msgpack] module:function``. It reads the whole
body from stdin, decodes it with msgpack when asked, resolves the target with
`pkgutil.resolve_name` (the standard library's ``pkg.mod:attr`` resolver) and calls it with
the body. Returning exits 0; an exception prints its traceback to stderr and exits 1, so the
harness treats it as a failure. Nothing survives between jobs: each one gets a new process.
"""

from __future__ import annotations

import pkgutil
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ..bodies import Msgpack


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    use_msgpack = "--msgpack" in args
    targets = [a for a in args if a != "--msgpack"]
    if len(targets) != 1 or ":" not in targets[0]:
        print("usage: python -m tubeclient.harness.callee [--msgpack] module:function",
              file=sys.stderr)
        return 2
    try:
        func = pkgutil.resolve_name(targets[0])
        raw = sys.stdin.buffer.read()
        body: Any = Msgpack().loads(raw) if use_msgpack else raw
        func(body)
    except BaseException:  # everything the job raises is a failure, with its traceback
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
