"""Builds tubebench's C programs (gen.c, null.c) on first use, into a per-user cache.

No binary is committed: each is compiled with the system compiler (`$CC`, else `cc`) at -O2
into $TUBEBENCH_CACHE, $XDG_CACHE_HOME/tubebench or ~/.cache/tubebench, named by a hash of
its source, the compiler and the flags, so an edited source rebuilds and an unchanged one
never does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCES = {"tubegen": "gen.c", "tubenull": "null.c"}
FLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")
BUILD_TIMEOUT = 120.0


class NoCompiler(RuntimeError):
    """No C compiler: the caller may fall back to the Python generator, and must say so."""


class BuildError(RuntimeError):
    """The compiler is there but the build failed (its output is in the message)."""


def compiler() -> list[str] | None:
    """The compiler's argv ($CC may carry flags), or None when there is none on PATH."""
    argv = shlex.split(os.environ.get("CC", "").strip() or "cc")
    if not argv or shutil.which(argv[0]) is None:
        return None
    return argv


def cache_dir() -> Path:
    if os.environ.get("TUBEBENCH_CACHE"):
        return Path(os.environ["TUBEBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tubebench"


def source(name: str) -> Path:
    return Path(__file__).resolve().parent / SOURCES[name]


@functools.cache
def _compiler_id(argv: tuple[str, ...]) -> str:
    """The first line of `cc --version`: a compiler upgrade rebuilds too."""
    try:
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout.splitlines() or ["unknown"])[0]


def binary(name: str) -> Path:
    """The built program `name` (tubegen or tubenull), building it if the cache lacks it."""
    cc = compiler()
    if cc is None:
        raise NoCompiler("no C compiler (set $CC or install cc, e.g. apt-get install gcc)")
    src = source(name)
    text = src.read_bytes()
    key = hashlib.sha256(b"\0".join([text, " ".join(cc).encode(), " ".join(FLAGS).encode(),
                                     _compiler_id(tuple(cc)).encode()])).hexdigest()[:16]
    out = cache_dir() / f"{name}-{key}"
    if os.access(out, os.X_OK):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: a concurrent run never sees half a binary.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=out.parent)
    os.close(fd)
    try:
        try:
            done = subprocess.run([*cc, *FLAGS, "-o", tmp, str(src)], capture_output=True,
                                  text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BuildError(f"{' '.join(cc)} {src.name}: {e}") from None
        if done.returncode != 0:
            raise BuildError(f"{' '.join(cc)} {src.name} failed:\n{done.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
