"""Fixtures shared by the client tests against real servers: one tubeserver and one
beanstalkd process per module, and a fresh tube name per test. A module that defines a
fixture of the same name uses its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import procs
import pytest

_tubes = itertools.count(1)


@pytest.fixture(scope="module")
def tubeserver() -> Iterator[procs.RunningServer]:
    with procs.tubeserver() as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


@pytest.fixture(scope="module")
def beanstalkd() -> Iterator[procs.RunningServer]:
    with procs.beanstalkd() as srv:
        yield srv
        assert srv.proc.poll() is None, "the server died during the module"


@pytest.fixture
def tube(request: pytest.FixtureRequest) -> str:
    return f"{request.node.originalname[:60]}.{next(_tubes)}"
