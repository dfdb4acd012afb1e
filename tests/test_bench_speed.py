"""tools/bench_speed.py runs for one tiny configuration and prints one table row per estimator."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import bench_speed  # noqa: E402


def test_bench_speed_tiny_table():
    cmd = [sys.executable, "tools/bench_speed.py", "--C", "4", "--N", "1", "--resolution", "8", "--batch", "4",
           "--steps", "1", "--warmup", "1", "--threads", "1", "--estimators", "softmax,gumbel_hard,ste:single_path"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^\| (\S+) \| (\d+) \| ([\d.]+) \| ([\d.]+)x \| (\d+) \| (\d+) \| (\d+) \|$", r.stdout, re.M)}
    assert list(rows) == ["softmax", "gumbel_hard", "ste:single_path"]
    assert rows["softmax"][2] == "1.00"
    for ms, ips, _, mem, w_ms, a_ms in rows.values():
        # images/s is batch / seconds per step: 4 images / (ms / 1000)
        assert float(ips) == pytest.approx(4000 / float(ms), rel=0.2) and int(mem) > 0
        # the two halves timed alone add up to about one step (coarse: ms are rounded, machine shared)
        assert 0.3 * float(ms) - 2 <= int(w_ms) + int(a_ms) <= 3 * float(ms) + 2
    assert "C=4 N=1 8x8 batch 4" in r.stdout


def test_default_specs_cover_the_registry():
    from nas.estimators import CATEGORICAL, ESTIMATORS, noise_capable
    specs = bench_speed.default_specs()
    for name in ESTIMATORS.names():
        assert (name in specs) == (CATEGORICAL in ESTIMATORS.get(name).kinds)
    assert all(f"{n}+noise" in specs for n in noise_capable() if n in specs)
    for s in specs:  # every default spec builds
        bench_speed.build_estimator_from_spec(s)


def test_bad_spec_is_one_line():
    r = subprocess.run([sys.executable, "tools/bench_speed.py", "--estimators", "softmax,nope"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr
