"""Build hook: compile tubeserver's pure core with mypyc when a C compiler is at hand.

pyproject.toml holds the project's metadata; this file only adds the extension modules.
Without a working compiler (or with TUBESERVER_COMPILE=0) the same sources install as plain
Python and run interpreted; `tubeserver --version` tells which build is running.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup

# The modules that run per command or per job, and stay mypyc-compilable: plain slotted
# classes, no attrs, no monkeypatching of their functions. All are pure but rounds.py, the
# hub's per-round socket work (no trio, no clock).
COMPILED = [
    "tubeserver/access.py",
    "tubeserver/admin.py",
    "tubeserver/ages.py",
    "tubeserver/commands.py",
    "tubeserver/deps.py",
    "tubeserver/dispatch.py",
    "tubeserver/engine.py",
    "tubeserver/errors.py",
    "tubeserver/flow.py",
    "tubeserver/histogram.py",
    "tubeserver/idmap.py",
    "tubeserver/job.py",
    "tubeserver/keys.py",
    "tubeserver/limits.py",
    "tubeserver/parser.py",
    "tubeserver/replay.py",
    "tubeserver/replies.py",
    "tubeserver/results.py",
    "tubeserver/restore.py",
    "tubeserver/rounds.py",
    "tubeserver/schedules.py",
    "tubeserver/session.py",
    "tubeserver/timers.py",
    "tubeserver/tracking.py",
    "tubeserver/tube.py",
    "tubeserver/tubelimits.py",
    "tubeserver/wakeup.py",
    "tubeserver/walrecords.py",
]


def _want_compiled() -> bool:
    setting = os.environ.get("TUBESERVER_COMPILE", "auto").strip().lower()
    if setting in ("0", "no", "false", "off"):
        return False
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    found = shutil.which(compiler) is not None
    if not found:
        if setting in ("1", "yes", "true", "on"):
            sys.exit(f"TUBESERVER_COMPILE={setting}, but no C compiler ({compiler}) was found")
        print(f"tubeserver: no C compiler ({compiler}); installing the interpreted build",
              file=sys.stderr)
    return found


def _write_manifest(paths: list[str]) -> None:
    """tubeserver/_build.json: which modules are compiled, from which sources (by hash), so
    that an import never runs an extension older than the source beside it."""
    manifest = {Path(p).stem: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    Path("tubeserver/_build.json").write_text(json.dumps(manifest, indent=1) + "\n")


ext_modules = []
if _want_compiled():
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3")
    _write_manifest(COMPILED)
else:
    _write_manifest([])

setup(ext_modules=ext_modules)
