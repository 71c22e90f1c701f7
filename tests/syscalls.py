"""What a process did, from an `strace -f` log, held against a unit's sandboxing options.

Theory of operation. systemd enforces SystemCallFilter=, RestrictAddressFamilies= and
MemoryDenyWriteExecute= with seccomp, and ProtectSystem=, PrivateDevices= and ProcSubset= by
the file system it shows the service; without systemd as PID 1 none of that can be switched
on here. Instead the server runs under strace, and `Trace` lists what the sandbox would have
had to allow: every system call (child processes included), socket families, memory mapped
writable and executable, paths written and device and /proc files opened. `allowed_syscalls`
turns a unit's filter lines into the set of names, with the groups expanded by
`systemd-analyze syscall-filter`, so the check follows the unit file and systemd's own
definition of each group.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import attrs

# strace -f: "PID name(args...) = result", or a call split around other threads' lines into
# "PID name(args <unfinished ...>" and "PID <... name resumed>...) = result".
_CALL = re.compile(r"^\d+ +(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)")
_START = re.compile(r"^\d+ +([a-z_0-9]+)\((.*)")
_PATH_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')

WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")
# Calls that change the file system at the path they name.
PATH_CHANGES = frozenset({"mkdir", "mkdirat", "unlink", "unlinkat", "rmdir", "rename",
                          "renameat", "renameat2", "truncate", "link", "linkat", "symlink",
                          "symlinkat", "chmod", "fchmodat", "mknod", "mknodat"})


def syscall_groups() -> dict[str, list[str]]:
    """systemd's system call groups (`@name` -> members, which may be groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], check=True, timeout=60,
                         capture_output=True, text=True).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            members = groups.setdefault(line.strip(), [])
        elif not line.startswith(" "):
            members = None  # the list of calls in no group, or a blank line
        elif members is not None and not line.strip().startswith("#"):
            members.append(line.strip())
    assert "@system-service" in groups, out[:500]
    return groups


def expand(names: Iterable[str], groups: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        calls |= expand(groups[name], groups) if name.startswith("@") else {name}
    return calls


def allowed_syscalls(filters: list[str], implied_denials: Iterable[str],
                     groups: dict[str, list[str]]) -> set[str]:
    """The calls SystemCallFilter= lines allow: the first is an allow list (with @default,
    which systemd always adds), each later `~` line takes calls away."""
    assert filters and not filters[0].startswith("~"), filters
    allowed = expand(["@default", *filters[0].split()], groups)
    for line in filters[1:]:
        assert line.startswith("~"), f"SystemCallFilter={line}: one allow list expected"
        allowed -= expand(line[1:].split(), groups)
    return allowed - expand(implied_denials, groups)


@attrs.frozen
class Trace:
    syscalls: frozenset[str]
    socket_families: frozenset[str]
    # Calls that MemoryDenyWriteExecute= refuses, as logged.
    write_exec: tuple[str, ...]
    written_paths: frozenset[str]
    opened_paths: frozenset[str]

    @classmethod
    def read(cls, path: Path) -> Trace:
        syscalls: set[str] = set()
        families: set[str] = set()
        write_exec: list[str] = []
        written: set[str] = set()
        opened: set[str] = set()
        for line in path.read_text(errors="replace").splitlines():
            if m := _CALL.match(line):
                syscalls.add(m[1])
            start = _START.match(line)
            if start is None:
                continue
            name, args = start[1], start[2]
            if name in ("socket", "socketpair"):
                families.add(args.split(",", 1)[0])
            elif name == "mmap" and _prot(args, 2) >= {"PROT_WRITE", "PROT_EXEC"}:
                write_exec.append(line)
            elif name in ("mprotect", "pkey_mprotect") and "PROT_EXEC" in _prot(args, 2):
                write_exec.append(line)
            elif name in ("shmat",) and "SHM_EXEC" in args:
                write_exec.append(line)
            paths = _PATH_ARG.findall(args)
            if not paths:
                continue
            if name in ("open", "openat", "openat2", "creat"):
                opened.add(paths[0])
                if name == "creat" or any(f in args for f in WRITE_FLAGS):
                    written.add(paths[0])
            elif name in PATH_CHANGES:
                written.update(paths)
        return cls(frozenset(syscalls), frozenset(families), tuple(write_exec),
                   frozenset(written), frozenset(opened))


def _prot(args: str, index: int) -> set[str]:
    """The PROT_* flags of the `index`th argument of mmap or mprotect."""
    fields = args.split(", ")
    return set(fields[index].split("|")) if len(fields) > index else set()
