import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# The test models are tiny: one thread is faster than two (no fork/join overhead per op) and
# leaves the other core to whatever else runs.
torch.set_num_threads(1)
# ... and the same for the nas-search / tools subprocesses the end-to-end tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, restored after: a test that sets another count (a run's
    ``trainer.threads``) must not change the float summation order of the next one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Decoded-dataset caches go to a per-session temp folder, never the user's ~/.cache.
    monkeypatch.setenv("NAS_CACHE", str(tmp_path_factory.getbasetemp() / "nas-cache"))
