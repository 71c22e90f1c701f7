"""The atheris fuzzer over target.py: `python tests/fuzz/run.py [libFuzzer flags] [DIR|FILE...]`.

Coverage needs the interpreted build (atheris instruments Python bytecode, not the mypyc
extensions), so this sets TUBESERVER_PURE=1 before tubeserver is imported. Given files, it
runs just those (to reproduce a crash); given directories, the first one receives the new
inputs it finds. `make fuzz` and tests/test_fuzz.py show the flags used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["TUBESERVER_PURE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for `fuzz`

import atheris

# The package first: it puts its finder of the core's sources at the head of sys.meta_path,
# where atheris's finder, entered next, must come before it to instrument them.
import tubeserver

with atheris.instrument_imports(include=["tubeserver"]):
    from fuzz import target


# tests/test_fuzz.py checks that a crash fails the run: with this set, an input holding
# SELFTEST_CRASH raises, as a server bug would.
SELFTEST = os.environ.get("TUBESERVER_FUZZ_SELFTEST") == "1"
SELFTEST_CRASH = b"fuzz-selftest-crash"


def one_input(data: bytes) -> None:
    if SELFTEST and SELFTEST_CRASH in data:
        raise RuntimeError("the self-test's crash")
    target.check(data)


def main() -> None:
    if not tubeserver.BUILD.startswith("interpreted"):
        sys.exit(f"fuzz: tubeserver runs {tubeserver.BUILD}: no coverage to guide the fuzzer")
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
