"""Test helpers for drivers: an emulator started for one test and stopped after it.

Driver tests mostly need "a wire emulator of model X on a free port, its
resource, and the emulator stopped whatever happens". ``running_emulator``
is that as a context manager; ``emulator_fixture()`` makes it a pytest
fixture (a factory, so one test can start several, e.g. an LCR meter and
its chamber), without a conftest edit:

    from drivers.kit.testing import emulator_fixture
    emulator = emulator_fixture()

    def test_identify(emulator):
        server = emulator(serve_2450, speed=50.0, cell_type="li_li")
        channel = create_2450(server.resource, {"clock_speed": 50.0}, RealClock())

Drivers never import this module; only tests do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from drivers.sim import SimParams

Serve = Callable[..., Any]


@contextmanager
def running_emulator(serve: Serve, params: SimParams | None = None, **options: Any) -> Iterator[Any]:
    """``serve(params, port=0, **options)`` started, yielded, and stopped on the way out."""
    server = serve(params if params is not None else SimParams(), port=0, **options)
    try:
        yield server
    finally:
        server.stop()


def emulator_fixture() -> Any:
    """A pytest fixture ``emulator(serve, params=None, **options) -> server``; every
    emulator a test started is stopped when the test ends (pass or fail)."""

    @pytest.fixture
    def emulator() -> Iterator[Callable[..., Any]]:
        with ExitStack() as stack:

            def start(serve: Serve, params: SimParams | None = None, **options: Any) -> Any:
                return stack.enter_context(running_emulator(serve, params, **options))

            yield start

    return emulator
