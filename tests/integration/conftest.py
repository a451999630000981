"""Fixtures shared by the integration tests: a real API server with the controllers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_controllers import Env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path / "data")
    await e.start()
    try:
        yield e
    finally:
        await e.close()
