"""The two builds: the core compiled by mypyc where a C compiler exists, else interpreted.

`tubeserver.BUILD` must say which one runs; TUBESERVER_PURE=1 must really load the sources;
an extension that no longer matches its source must never run in its place.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tubeserver
from tubeserver import engine, parser

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tubeserver"
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
PURE = os.environ.get("TUBESERVER_PURE", "").strip() not in ("", "0")


def compiled_list() -> list[str]:
    """setup.py's COMPILED, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [Path(p).stem for p in value]
    raise AssertionError("setup.py has no COMPILED list")


def built() -> bool:
    return (PACKAGE / tubeserver.MANIFEST).exists() and bool(
        json.loads((PACKAGE / tubeserver.MANIFEST).read_text()))


def test_compiled_modules_are_core_modules_or_the_hubs_rounds() -> None:
    from test_architecture import CORE

    names = compiled_list()
    # rounds.py does socket I/O for the hub, but imports neither trio nor a clock.
    assert names and set(names) <= {*CORE, "rounds"}
    assert "engine" in names and "parser" in names


def test_build_says_what_runs() -> None:
    files = {engine.__file__, parser.__file__}
    if tubeserver.BUILD == "compiled (mypyc)":
        assert not PURE and all(f is not None and f.endswith(SUFFIX) for f in files)
    else:
        assert tubeserver.BUILD.startswith("interpreted")
        assert all(f is not None and f.endswith(".py") for f in files)


@pytest.mark.skipif(PURE or not built(), reason="the compiled build is not installed here")
def test_a_compiler_gives_the_compiled_build() -> None:
    assert tubeserver.BUILD == "compiled (mypyc)"


def run_in(root: Path, env: dict[str, str] | None = None) -> tuple[str, str]:
    code = ("import tubeserver, tubeserver.engine as e, tubeserver.job as j; "
            "print(tubeserver.BUILD); print(e.__file__); print(j.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root), **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the installed package (extensions included) to change safely."""
    if not built():
        pytest.skip("the compiled build is not installed here")
    shutil.copytree(PACKAGE, tmp_path / "tubeserver",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for lib in ROOT.glob(f"*__mypyc{SUFFIX}"):
        shutil.copy(lib, tmp_path)
    return tmp_path


def test_pure_loads_every_module_from_source(copy: Path) -> None:
    out, _ = run_in(copy, {"TUBESERVER_PURE": "1"})
    build, engine_file, job_file = out.splitlines()
    assert build == "interpreted (TUBESERVER_PURE is set)"
    assert engine_file.startswith(str(copy)) and engine_file.endswith("engine.py")
    assert job_file.endswith("job.py")


def test_an_edited_source_is_never_shadowed_by_its_old_extension(copy: Path) -> None:
    out, _ = run_in(copy, {"TUBESERVER_PURE": ""})
    assert out.splitlines()[0] == "compiled (mypyc)"
    with open(copy / "tubeserver" / "job.py", "a") as f:
        f.write("\nEDITED = True\n")
    out, err = run_in(copy, {"TUBESERVER_PURE": ""})
    build, engine_file, job_file = out.splitlines()
    assert build.startswith("interpreted (compiled build is stale (job.py changed")
    assert engine_file.endswith("engine.py") and job_file.endswith("job.py")
    assert "running interpreted" in err
