"""Layering rules, checked by reading the import statements of every module (nothing is imported).

The protocol core stays sans-IO and clock-free, the engine knows nothing of the layers above it,
trio lives only in the server/connection/hub/CLI layer, and the client never imports the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Directory -> import name (client/ is installed as tubeclient).
PACKAGES = {"tubeserver": "tubeserver", "client": "tubeclient"}

# The sans-IO core: no trio, no I/O, no clock, no randomness.
CORE = (
    "engine", "job", "tube", "session", "parser", "commands", "errors", "limits", "replies",
    "stats", "dispatch", "walrecords", "replay", "tracking", "invariants", "timers", "flow",
    "keys", "deps", "tubelimits", "schedules", "restore", "admin", "ages", "histogram",
    "access", "idmap", "results", "wakeup",
)
# Standard-library and third-party modules the core may use: pure computation only. A new
# pure module may be added here; anything touching sockets, files, processes, threads, clocks
# or randomness may not.
PURE = frozenset({
    "__future__", "abc", "array", "attrs", "bisect", "collections", "dataclasses", "enum",
    "fnmatch",
    "functools", "heapq", "itertools", "math", "msgpack", "operator", "re", "struct", "typing",
    "typing_extensions", "zlib",
})
# Named explicitly so that the failure message says why.
IO_OR_TIME = frozenset({
    "asyncio", "concurrent", "datetime", "errno", "fcntl", "io", "logging", "mmap",
    "multiprocessing", "os", "pathlib", "random", "resource", "secrets", "select", "selectors",
    "shutil", "signal", "socket", "ssl", "subprocess", "sys", "tempfile", "threading", "time",
    "trio", "uuid",
})
# stats.py reports process facts (pid, uname, rusage, a random instance id): exactly these;
# and datetime, to write job-status's wall-clock times (from numbers it is given, never now).
STATS_EXTRA = frozenset({"os", "resource", "secrets", "datetime"})
# Deliberate per-module exceptions to PURE; each one is a decision, not a convenience.
# schedules.py: calendar arithmetic on wall times it is given (datetime, cronsim); it never
# asks for the time.
SCHEDULES_EXTRA = frozenset({"datetime", "cronsim"})
EXTRA_ALLOWED: dict[str, frozenset[str]] = {"stats": STATS_EXTRA, "schedules": SCHEDULES_EXTRA}
# The engine side must not know about the layers that feed it.
LOWER = ("engine", "job", "tube", "session", "tracking", "timers", "flow", "keys", "deps",
         "restore", "tubelimits", "schedules", "idmap", "results", "wakeup")
UPPER = ("parser", "dispatch", "connection", "hub", "server", "__main__")
TRIO_ALLOWED = frozenset({"server", "connection", "hub", "__main__"})


@attrs.frozen
class Import:
    module: str  # absolute dotted name, relative imports resolved
    line: int

    @property
    def top(self) -> str:
        return self.module.partition(".")[0]


@attrs.frozen
class Module:
    name: str  # dotted import name, e.g. tubeserver.engine
    path: Path
    imports: tuple[Import, ...]
    dynamic: tuple[int, ...]  # lines using importlib / __import__

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


def _module_name(path: Path, directory: str) -> str:
    parts = [PACKAGES[directory], *path.relative_to(ROOT / directory).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(node: ast.ImportFrom, name: str, path: Path, known: frozenset[str]) -> list[str]:
    if node.level:
        base = _package_of(name, path).split(".")
        if node.level - 1 >= len(base):
            raise AssertionError(f"{path}: relative import beyond the top-level package")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        assert node.module is not None
        target = node.module
    # `from . import commands` imports the submodule tubeserver.commands.
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append(sub if sub in known else target)
    return out


def _walk() -> dict[str, Module]:
    files = [
        (path, directory)
        for directory in PACKAGES
        for path in sorted((ROOT / directory).rglob("*.py"))
    ]
    known = frozenset(_module_name(path, directory) for path, directory in files)
    modules: dict[str, Module] = {}
    for path, directory in files:
        name = _module_name(path, directory)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports: list[Import] = []
        dynamic: list[int] = []
        # ast.walk sees every import: top level, inside functions, under TYPE_CHECKING.
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imports += [Import(alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                resolved = _resolve(node, name, path, known)
                imports += [Import(module, node.lineno) for module in resolved]
            elif isinstance(node, ast.Name) and node.id == "__import__":
                dynamic.append(node.lineno)
            elif isinstance(node, ast.Attribute) and node.attr == "import_module":
                dynamic.append(node.lineno)
        modules[name] = Module(name, path, tuple(imports), tuple(dynamic))
    return modules


MODULES = _walk()


def server_module(short: str) -> Module:
    name = f"tubeserver.{short}"
    assert name in MODULES, f"tubeserver/{short}.py is named in a layering rule but does not exist"
    return MODULES[name]


def external(module: Module) -> list[Import]:
    """Imports of modules outside this repository's packages."""
    return [i for i in module.imports if i.top not in PACKAGES.values()]


# --------------------------------------------------------------------------- the walker itself


def test_walker_sees_every_module_and_resolves_relative_imports() -> None:
    for short in (*CORE, "server", "connection", "hub", "__main__"):
        server_module(short)
    assert "tubeclient" in MODULES
    parser = {i.module for i in server_module("parser").imports}
    assert {"tubeserver.commands", "tubeserver.errors", "tubeserver.limits"} <= parser, parser
    stats = {i.module for i in server_module("stats").imports}
    assert "tubeserver" in stats  # `from . import __version__` is the package itself
    session = {i.module for i in server_module("session").imports}
    assert "tubeserver.job" in session  # under TYPE_CHECKING, still seen


def test_no_dynamic_imports() -> None:
    # The rules below are only as good as the walk: importlib / __import__ would hide edges.
    problems = [
        f"{m.where}:{line} imports dynamically (importlib / __import__), which this "
        "layering test cannot see"
        for m in MODULES.values()
        for line in m.dynamic
    ]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("short", CORE)
def test_core_is_pure(short: str) -> None:
    module = server_module(short)
    allowed = PURE | EXTRA_ALLOWED.get(short, frozenset())
    problems = []
    for imp in external(module):
        if imp.top in allowed:
            continue
        if imp.top in IO_OR_TIME:
            why = "I/O, time or randomness"
        else:
            why = "a module not known to be pure (add it to PURE in this test if it is)"
        problems.append(
            f"{module.where}:{imp.line} imports {imp.module}: {why}; the core modules "
            f"({', '.join(CORE)}) must stay sans-IO and clock-free"
        )
    assert not problems, "\n".join(problems)


def test_stats_process_imports_are_exactly_the_allowed_set() -> None:
    module = server_module("stats")
    used = {i.top for i in external(module)} - PURE
    assert used == STATS_EXTRA, (
        f"{module.where} imports {sorted(used)} beyond pure modules; allowed exactly "
        f"{sorted(STATS_EXTRA)} for process info (update STATS_EXTRA deliberately)"
    )


@pytest.mark.parametrize("short", LOWER)
def test_engine_side_does_not_import_upper_layers(short: str) -> None:
    module = server_module(short)
    forbidden = {f"tubeserver.{u}" for u in UPPER}
    problems = [
        f"{module.where}:{imp.line} imports {imp.module}: {', '.join(LOWER)} must not know "
        f"about {', '.join(UPPER)}"
        for imp in module.imports
        if any(imp.module == f or imp.module.startswith(f + ".") for f in forbidden)
    ]
    assert not problems, "\n".join(problems)


def test_only_server_connection_and_main_import_trio() -> None:
    problems = [
        f"{module.where}:{imp.line} imports {imp.module}: only "
        f"{', '.join(sorted(f'tubeserver/{m}.py' for m in TRIO_ALLOWED))} may import trio"
        for module in MODULES.values()
        if module.name.startswith("tubeserver")
        and module.name.removeprefix("tubeserver.") not in TRIO_ALLOWED
        for imp in module.imports
        if imp.top == "trio"
    ]
    assert not problems, "\n".join(problems)


def test_client_does_not_import_tubeserver() -> None:
    client = [m for m in MODULES.values() if m.name.partition(".")[0] == "tubeclient"]
    assert client, "no client modules found"
    problems = [
        f"{module.where}:{imp.line} imports {imp.module}: nothing in client/ may import "
        "tubeserver (the client speaks the protocol, not the server's internals)"
        for module in client
        for imp in module.imports
        if imp.top == "tubeserver"
    ]
    assert not problems, "\n".join(problems)
