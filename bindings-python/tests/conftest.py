"""Fixtures starting real servers (tests/kit.py) for the stored-mirror tests."""

from collections.abc import Iterator

import pytest

from kit import Postgres, Registry


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.stop()
