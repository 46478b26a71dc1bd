"""The NLP worker pool in-process: a model that does not load in time fails startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from entityflow.errors import StartupError
from entityflow.metrics import Metrics
from entityflow.pool import WorkerPool
from tests.conftest import make_settings


async def test_a_model_load_past_the_deadline_fails_startup(tmp_path: Path) -> None:
    pool = WorkerPool(make_settings(tmp_path, workers=1), None, Metrics(), load_deadline=0.001)
    try:
        with pytest.raises(StartupError, match=r"did not load the model .* within 0s"):
            await pool.start()
        assert not pool.ready
    finally:
        await pool.close()
