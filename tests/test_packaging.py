"""Packaging: the built wheel provides both import names and the console script.

`pip install -e .` is what the test run itself uses; this checks the other path, a regular
wheel installed away from the source tree, so the `client/` -> `tubeclient` mapping and the
`tubeserver` entry point are proven outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_both_packages(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)],
        check=True, timeout=180, capture_output=True,
    )
    (wheel,) = wheels.glob("tubeserver-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tubeclient/__init__.py" in names
    assert "tubeserver/__main__.py" in names
    assert {f"tubeserver/static/{n}" for n in ("dashboard.js", "dashboard.css", "favicon.svg")
            } <= set(names)
    assert not any(n.startswith("client/") for n in names)
    # The systemd units, their example settings and the Kubernetes example (README.md,
    # "Deployment"), next to the installed package.
    deploy = {n for n in names if n.startswith("tubeserver/deploy/")}
    shipped = {f"tubeserver/deploy/{p.name}" for p in (ROOT / "tubeserver/deploy").iterdir()}
    assert deploy == shipped and len(shipped) == 5
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "tubeserver = tubeserver.__main__:main" in text
    assert "tubectl = tubeclient.ctl:main" in text

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, timeout=180, capture_output=True,
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    probe = subprocess.run(
        [sys.executable, "-c",
         "import tubeclient, tubeserver; print(tubeclient.__file__); print(tubeserver.__file__)"],
        cwd=tmp_path, env=env, check=True, timeout=60, capture_output=True, text=True,
    )
    for line in probe.stdout.splitlines():
        assert line.startswith(str(target)), line
    version = subprocess.run(
        [sys.executable, "-m", "tubeserver", "--version"],
        cwd=tmp_path, env=env, check=True, timeout=60, capture_output=True, text=True,
    )
    assert version.stdout.startswith("tubeserver ")
