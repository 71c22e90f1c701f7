"""tubeserver: a beanstalkd-compatible job server on trio.

The pure core may be compiled with mypyc (setup.py); `BUILD` says which build this process
runs. With TUBESERVER_PURE=1, or when a compiled module no longer matches its source (an
edited checkout not rebuilt yet), every module is loaded from its .py source instead, so a
stale extension never runs in place of the code beside it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"

_HERE = Path(__file__).parent
MANIFEST = "_build.json"  # written by setup.py: the compiled modules and their sources' hashes


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds tubeserver's compiled modules as plain sources."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in self.names:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / f"{name}.py")


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _choose_build() -> str:
    try:
        compiled: dict[str, str] = json.loads((_HERE / MANIFEST).read_text())
    except (OSError, ValueError):
        return "interpreted"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if not compiled or not all((_HERE / f"{n}{suffix}").exists() for n in compiled):
        return "interpreted"
    why = ""
    if os.environ.get("TUBESERVER_PURE", "").strip() not in ("", "0"):
        why = "TUBESERVER_PURE is set"
    else:
        stale = sorted(n for n, h in compiled.items() if source_hash(_HERE / f"{n}.py") != h)
        if stale:
            why = f"compiled build is stale ({', '.join(stale)}.py changed; reinstall to rebuild)"
            print(f"tubeserver: {why}; running interpreted", file=sys.stderr)
    if why:
        sys.meta_path.insert(0, _SourceFinder(frozenset(compiled)))
        return f"interpreted ({why})"
    return "compiled (mypyc)"


BUILD = _choose_build()
