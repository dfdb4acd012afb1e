"""Fault injection, data-parallel ranks started by hand (issue 32, items 6 and 13): ranks whose
configs differ are refused at the start with the first differing key, and a global batch with
fewer images than ranks is refused up front."""
import os
import socket
import subprocess
import sys

import pytest

from faults import REPO, TINY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def by_hand(tmp_path, per_rank, timeout=120):
    """``nas-search`` on 2 gloo ranks on 127.0.0.1, rank r with the overrides ``per_rank[r]``, as a
    user launching the processes without torchrun does; ``[(exit code, stderr)]`` per rank."""
    port = free_port()
    procs = []
    for rank, extra in enumerate(per_rank):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(len(per_rank))}
        argv = [*TINY, "device=cpu", "trainer.dist_timeout=60", *extra, "--out", str(tmp_path / "run"), "--quiet"]
        procs.append(subprocess.Popen([sys.executable, "-m", "nas", *argv], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err.strip()))
    return out


@pytest.mark.parametrize("key, mine, theirs", [("trainer.epochs", 1, 2), ("optim.arch.lr", 0.003, 0.5)])
def test_ranks_with_different_configs_are_refused_with_the_first_differing_key(tmp_path, key, mine, theirs):
    (c0, e0), (c1, e1) = by_hand(tmp_path, [[f"{key}={mine}"], [f"{key}={theirs}"]])
    expect = (f"rank 1 runs another config than rank 0: {key}={theirs!r} there, {mine!r} on rank 0; start every "
              f"rank with the same config, overrides and nas version")
    assert (c0, c1) == (2, 2), (e0, e1)
    assert [e0, e1] == [f"nas-search [rank {r}/2]: error: {expect}" for r in (0, 1)]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_global_batch_smaller_than_the_ranks_is_refused_up_front(tmp_path):
    (c0, e0), (c1, e1) = by_hand(tmp_path, [["data.batch_size=1"], ["data.batch_size=1"]])
    expect = ("data.batch_size=1 is the global batch, split over 2 ranks: give at least one image per rank "
              "(data.batch_size >= 2), or start fewer ranks")
    assert (c0, c1) == (2, 2), (e0, e1)
    assert [e0, e1] == [f"nas-search [rank {r}/2]: error: {expect}" for r in (0, 1)]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
