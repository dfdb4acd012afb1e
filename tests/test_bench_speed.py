"""nas-bench runs for one tiny configuration and prints one table row per estimator."""
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from nas.commands import bench as bench_speed

REPO = Path(__file__).resolve().parents[1]


def test_bench_speed_tiny_table():
    cmd = [sys.executable, "-m", "nas.commands.bench", "--C", "4", "--N", "1", "--resolution", "8", "--batch", "4",
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
    r = subprocess.run([sys.executable, "-m", "nas.commands.bench", "--estimators", "softmax,nope"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr


FAKE_SEARCHS = '''
import torch
from torch import nn


class _Net(nn.Module):
    """The interface nas-bench uses of xautodl's NB201 search models, on a tiny stand-in."""

    def __init__(self, C, N, max_nodes, num_classes, search_space, affine, track_running_stats):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.fc = nn.Linear(C, num_classes)
        self.arch_parameters = nn.Parameter(1e-3 * torch.randn(6, len(search_space)))

    def get_weights(self):
        return list(self.conv.parameters()) + list(self.fc.parameters())

    def get_alphas(self):
        return [self.arch_parameters]

    def forward(self, x):
        h = self.conv(x).mean((2, 3)) * self.arch_parameters.softmax(-1).sum()
        return h, self.fc(h)


TinyNetworkDarts = TinyNetworkGDAS = _Net
'''


@pytest.mark.slow  # nine fresh processes
def test_against_xautodl_alternates_and_prints_ratios(tmp_path):
    """The side-by-side mode on a stand-in for xautodl's package (the real one is not a dependency)."""
    pkg = tmp_path / "xautodl" / "models" / "cell_searchs"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "xautodl", tmp_path / "xautodl" / "models"):
        (d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text(FAKE_SEARCHS)
    (tmp_path / "xautodl" / "models" / "cell_operations.py").write_text(
        "SearchSpaceNames = {'nas-bench-201': "
        "['none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3']}\n")
    cmd = [sys.executable, "-m", "nas.commands.bench", "--C", "4", "--N", "1", "--resolution", "8", "--batch", "4",
           "--steps", "1", "--warmup", "1", "--threads", "1", "--rounds", "2", "--single-path-steps", "1",
           "--against-xautodl", str(tmp_path)]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    order = re.findall(r"^round (\d): (nas|xautodl) (\w+):", r.stderr, re.M)
    # round 1: nas first, round 2: xautodl first, pair by pair
    assert order == [("1", "nas", "softmax"), ("1", "xautodl", "darts"), ("1", "nas", "gumbel_hard"),
                     ("1", "xautodl", "gdas"), ("2", "xautodl", "darts"), ("2", "nas", "softmax"),
                     ("2", "xautodl", "gdas"), ("2", "nas", "gumbel_hard")]
    rows = re.findall(r"^\| (dense|single path): \S+ vs (DARTS|GDAS) \| ([\d.]+) \([\d.]+\) \| ([\d.]+) \([\d.]+\) "
                      r"\| ([\d.]+)x", r.stdout, re.M)
    assert [row[:2] for row in rows] == [("dense", "DARTS"), ("single path", "GDAS")]
    # each cell is the median over the rounds of what the round lines say (2 rounds: their mean)
    ips = {(rnd, what): float(v) for rnd, what, v in
           re.findall(r"^round (\d): (?:nas|xautodl) (\w+): ([\d.]+) images/s", r.stderr, re.M)}
    for (_, _, nas_ips, x_ips, ratio), (spec, model) in zip(rows, [("softmax", "darts"), ("gumbel_hard", "gdas")],
                                                            strict=True):
        assert float(nas_ips) == pytest.approx(statistics.median(ips[r, spec] for r in "12"), abs=0.11)
        assert float(x_ips) == pytest.approx(statistics.median(ips[r, model] for r in "12"), abs=0.11)
        # the wall speed-up: xautodl's ms per step over this project's, round by round
        want = statistics.median(ips[r, spec] / ips[r, model] for r in "12")
        assert float(ratio) == pytest.approx(want, rel=0.01, abs=0.006)
    assert "load average" in r.stdout


def test_against_xautodl_without_the_package_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nas.commands.bench", "--against-xautodl", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "xautodl/models/cell_searchs" in r.stderr
