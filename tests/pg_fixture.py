"""pytest fixture: one throwaway PostgreSQL cluster per test session (see pg_cluster.py).

Missing server binaries make the PostgreSQL tests *fail* with what to install, never skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg_cluster import PgCluster, start_cluster_or_fail


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = start_cluster_or_fail(lambda message: pytest.fail(message, pytrace=False))
    try:
        yield cluster
    finally:
        cluster.stop()
