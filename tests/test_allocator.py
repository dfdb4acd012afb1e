"""keep_freed_memory (nas/engine/runtime.py): glibc's heap keeps what a step frees for the next."""
import json
import os
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, sys, torch
from nas.engine.runtime import keep_freed_memory
kept = keep_freed_memory()
torch.manual_seed(0)
net = torch.nn.Sequential(*[m for _ in range(6) for m in (torch.nn.Conv2d(16, 16, 3, padding=1, bias=False),
                                                         torch.nn.BatchNorm2d(16), torch.nn.ReLU())])
x = torch.randn(64, 16, 16, 16).contiguous(memory_format=torch.channels_last)
def step():  # a training step's forward and backward at the CPU proxy's size (activations of 1 MB)
    net(x).square().mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(**env):
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run_env.update(env, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE], env=run_env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_activations_are_reused_without_page_faults():
    kept, default = probe(), probe(NAS_KEEP_FREED_MEMORY="0")
    if not kept["kept"]:
        pytest.skip("the C library is not glibc")
    assert default["kept"] is False
    # by default glibc gives the freed megabytes back and faults them in again, page by page (4 kB)
    assert default["faults"] > 20 * 256
    # kept: a few hundred faults in all (measured 512-769, the probe's own bookkeeping), under a
    # quarter of one step's megabyte per step; a ratio to the default's 15-45 thousand was too tight
    assert kept["faults"] < 20 * 256 / 4


def test_a_user_tuned_malloc_is_left_alone():
    assert probe(MALLOC_TOP_PAD_="0")["kept"] is False
    assert probe(NAS_KEEP_FREED_MEMORY="0")["kept"] is False


def test_the_search_is_the_same_with_and_without(tmp_path):
    """The allocator changes where tensors live, not what they hold: the same seed gives the same α,
    weights, statistics and history, bitwise."""
    args = ["-m", "nas.cli", "space.C=4", "data.subset=200", "trainer.epochs=2", "trainer.bn_batches=2", "--quiet"]
    runs = {}
    for v in ("1", "0"):
        runs[v] = tmp_path / v
        env = {k: x for k, x in os.environ.items() if not k.startswith("MALLOC_")}
        subprocess.run([sys.executable, *args, "--out", str(runs[v])], check=True, capture_output=True,
                       env=dict(env, NAS_KEEP_FREED_MEMORY=v, OMP_NUM_THREADS="1", NAS_CACHE=str(tmp_path / "cache")))
    import torch
    a, b = (torch.load(runs[v] / "checkpoint.pt", weights_only=False) for v in ("1", "0"))
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    ma, mb = (json.loads((runs[v] / "metrics.json").read_text()) for v in ("1", "0"))
    assert (ma["history"], ma["val_acc"], ma["genotype"]) == (mb["history"], mb["val_acc"], mb["genotype"])
