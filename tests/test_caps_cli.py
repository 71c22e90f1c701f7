"""The caps' flags and variables: parsed into Config.caps (sizes as 512M or 2G), named in
--help, and refused with usage and exit status 2 when bad, never a traceback."""

from __future__ import annotations

import re

import pytest
from test_cli import clean_env, run

from tubeserver.__main__ import parse_config
from tubeserver.caps import DEFAULT_BUFFER, NO_CAPS, Caps, buffer_floor

FLAGS = ("--max-connections", "--max-jobs", "--max-memory", "--max-connection-buffer",
         "--stall-timeout")
VARS = ("TUBESERVER_MAX_CONNECTIONS", "TUBESERVER_MAX_JOBS", "TUBESERVER_MAX_MEMORY",
        "TUBESERVER_MAX_CONNECTION_BUFFER", "TUBESERVER_STALL_TIMEOUT")


def test_every_cap_is_off_or_generous_by_default() -> None:
    config = parse_config([], {})
    assert config.caps == NO_CAPS == Caps()
    assert config.caps.buffer(65535) == DEFAULT_BUFFER + 65535


def test_flags_set_the_caps() -> None:
    config = parse_config(["--max-connections", "100", "--max-jobs", "5000", "--max-memory",
                           "512M", "--max-connection-buffer", "2G", "--stall-timeout", "2.5"],
                          {})
    assert config.caps == Caps(max_connections=100, max_jobs=5000, max_memory=512 << 20,
                               connection_buffer=2 << 30, stall_timeout=2.5)


def test_variables_set_the_caps_and_flags_win() -> None:
    env = dict(zip(VARS, ("7", "8", "64K", "1048576000", "0.3"), strict=True))
    config = parse_config(["--max-jobs", "9"], env)
    assert config.caps == Caps(max_connections=7, max_jobs=9, max_memory=64 << 10,
                               connection_buffer=1048576000, stall_timeout=0.3)


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("1000", 1000), ("64k", 64 << 10), ("512M", 512 << 20), ("2G", 2 << 30),
    ("1T", 1 << 40), ("3MB", 3 << 20), ("3MiB", 3 << 20), ("100B", 100),
])
def test_memory_sizes(text: str, size: int) -> None:
    assert parse_config(["--max-memory", text], {}).caps.max_memory == size


def test_help_names_every_cap_and_its_variable() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    words = set(re.findall(r"[-\w]+", result.stdout))
    assert set(FLAGS) <= words and set(VARS) <= words, (set(FLAGS) | set(VARS)) - words
    assert "TOO_MANY_CONNECTIONS" in result.stdout and "OUT_OF_MEMORY" in result.stdout


@pytest.mark.parametrize(("args", "mentions"), [
    (["--max-connections", "-1"], "-1"),
    (["--max-jobs", "many"], "many"),
    (["--max-memory", "1.5G"], "1.5G"),
    (["--max-memory", "12X"], "12X"),
    (["--max-memory", "G"], "G"),
    (["--stall-timeout", "soon"], "soon"),
    (["--stall-timeout", "-1"], "-1"),
    (["--stall-timeout", "nan"], "nan"),
    (["--max-connection-buffer", "64K"], str(buffer_floor(65535))),
    (["-z", "1000000", "--max-connection-buffer", "1M"], str(buffer_floor(1000000))),
])
def test_bad_values_print_usage_and_exit_2(args: list[str], mentions: str) -> None:
    result = run(*args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("usage: tubeserver"), result.stderr
    assert mentions in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_a_bad_variable_exits_2_naming_it() -> None:
    result = run(env=clean_env(TUBESERVER_MAX_MEMORY="lots"))
    assert result.returncode == 2, result
    last = result.stderr.splitlines()[-1]
    assert "TUBESERVER_MAX_MEMORY" in last and "lots" in last
