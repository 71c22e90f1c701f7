"""Read the systemd units and environment files in tubeserver/deploy/ as systemd would, so
the tests can run a unit's command line without systemd.

Only the subset of systemd's syntax the shipped files use is accepted, and anything outside
it raises `Unsupported` instead of being read differently from systemd: in units, `Key=Value`
lines under `[Section]` headers, ExecStart without quotes or prefixes, `$VAR` as a whole word
(split at whitespace) or `${VAR}` (one word), and the specifiers %i and %S; in environment
files, `NAME=value` lines without quotes, escapes or spaces around `=`.
"""

from __future__ import annotations

import re
import shutil
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "tubeserver" / "deploy"
# Where the units expect the installed commands (a virtualenv in /opt/tubeserver).
INSTALLED_BIN = "/opt/tubeserver/bin/"
# systemd's PATH for services (on a merged /usr); nothing else is inherited.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Unsupported(ValueError):
    """A line these helpers cannot read exactly as systemd does."""


def venv_bin() -> str:
    """The directory of this test run's `tubeserver` and `tubeworker` commands."""
    scripts = sysconfig.get_path("scripts")
    found = shutil.which("tubeserver", path=scripts)
    assert found is not None, f"tubeserver is not installed in {scripts}"
    return str(Path(found).parent) + "/"


@attrs.frozen
class Unit:
    """A unit file's settings, in file order: (section, key, value)."""

    name: str
    text: str
    entries: tuple[tuple[str, str, str], ...]

    @classmethod
    def load(cls, name: str) -> Unit:
        text = (DEPLOY / name).read_text()
        entries: list[tuple[str, str, str]] = []
        section = ""
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            if not sep or not section or line.endswith("\\"):
                raise Unsupported(f"{name}:{n}: {raw!r}")
            entries.append((section, key.strip(), value.strip()))
        return cls(name, text, tuple(entries))

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [v for s, k, v in self.entries if s == section and k == key]

    def value(self, key: str, section: str = "Service") -> str:
        found = self.values(key, section)
        assert len(found) == 1, f"{self.name}: {key}= is set {len(found)} times"
        return found[0]

    def flag(self, key: str) -> bool:
        return self.values(key) == ["yes"]

    def seconds(self, key: str) -> float:
        """A time span given in plain seconds (the shipped units use no units like "min")."""
        return float(self.value(key))

    def with_bin(self, bin_dir: str) -> str:
        """The unit's text with its commands taken from `bin_dir` instead of
        /opt/tubeserver/bin/ (only ExecStart names them)."""
        lines = self.text.splitlines(keepends=True)
        starts = [i for i, ln in enumerate(lines) if ln.startswith("ExecStart=")]
        assert len(starts) == 1, f"{self.name}: one ExecStart= line expected"
        (i,) = starts
        assert lines[i].startswith("ExecStart=" + INSTALLED_BIN), lines[i]
        lines[i] = lines[i].replace(INSTALLED_BIN, bin_dir, 1)
        return "".join(lines)


def read_env_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(settings, commented-out settings) of an environment file; a commented-out line is
    `#NAME=value` with nothing between `#` and the name."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        target = active
        if line.startswith("#"):
            line, target = line[1:], commented
            if not _NAME.match(line) or "=" not in line.split()[0]:
                continue  # prose
        name, sep, value = line.partition("=")
        if not sep or not _NAME.fullmatch(name) or value != value.strip() or any(
            c in value for c in "\"'\\$"
        ):
            raise Unsupported(f"{path.name}:{n}: {raw!r}")
        target[name] = value
    return active, commented


def specifiers(text: str, instance: str, state_root: str) -> str:
    """Expand the specifiers the units use: %i (instance), %S (/var/lib), %%."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        spec = text[i + 1 : i + 2]
        if spec == "i":
            out.append(instance)
        elif spec == "S":
            out.append(state_root)
        elif spec == "%":
            out.append("%")
        else:
            raise Unsupported(f"specifier %{spec} in {text!r}")
        i += 2
    return "".join(out)


def environment(unit: Unit, env_file: Path, instance: str = "", state_root: str = "/var/lib",
                ) -> dict[str, str]:
    """The environment systemd gives the unit's ExecStart: its PATH, then Environment=,
    then the file (which wins)."""
    env = {"PATH": SERVICE_PATH}
    for assignment in unit.values("Environment"):
        name, sep, value = specifiers(assignment, instance, state_root).partition("=")
        if not sep or not _NAME.fullmatch(name) or any(c in value for c in "\"' $"):
            raise Unsupported(f"Environment={assignment}")
        env[name] = value
    files = unit.values("EnvironmentFile")
    assert len(files) == 1, f"{unit.name}: one EnvironmentFile= expected"
    active, _ = read_env_file(env_file)
    env.update(active)
    return env


def command_line(unit: Unit, env: Mapping[str, str], instance: str = "",
                 state_root: str = "/var/lib") -> list[str]:
    """ExecStart's argv as systemd builds it with `env`."""
    line = specifiers(unit.value("ExecStart"), instance, state_root)
    if any(c in line for c in "\"'\\;") or not line.startswith("/"):
        raise Unsupported(f"ExecStart={line}")
    argv: list[str] = []
    for word in line.split():
        if word.startswith("${") and word.endswith("}") and _NAME.fullmatch(word[2:-1]):
            argv.append(env.get(word[2:-1], ""))
        elif word.startswith("$") and _NAME.fullmatch(word[1:]):
            argv.extend(env.get(word[1:], "").split())
        elif "$" in word:
            raise Unsupported(f"ExecStart word {word!r}")
        else:
            argv.append(word)
    return argv
