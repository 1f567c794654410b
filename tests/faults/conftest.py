"""Fault tests: a database server of their own, stopped and started under load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from melhor_saude.db import DatabaseUrls

from .server import RestartableServer


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableServer]:
    server = RestartableServer(Path(tmp_path_factory.mktemp("faults")))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def fault_db(restartable: RestartableServer) -> DatabaseUrls:
    return restartable.database("ms_faults")
