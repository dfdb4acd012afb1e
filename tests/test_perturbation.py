"""DARTS-PT perturbation-based selection: it keeps the op whose removal costs the most accuracy,
whatever α says, leaves the model untouched, and runs from nas-derive on a real checkpoint."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from nas.estimators import build_estimator
from nas.supernet.choice import Choice
from nas.supernet.perturbation import select_by_perturbation

REPO = Path(__file__).resolve().parents[1]


class TwoEdges(nn.Module):
    """Output = Σ_rows Σ_k w[row, k] · op_k(x); exactly one candidate per row solves the task."""

    def __init__(self):
        super().__init__()
        self.arch = nn.ModuleDict({"cell": Choice(build_estimator("softmax"), 2, ["a", "b", "c"],
                                                  generator=torch.Generator().manual_seed(0))})
        with torch.no_grad():  # α prefers the useless candidate b on both rows
            self.arch["cell"].alpha.copy_(torch.tensor([[0.0, 2.0, 0.0], [0.0, 2.0, 0.0]]))

    def forward(self, x):
        w = self.arch["cell"]().weights
        solve = torch.stack([-x[:, 0], x[:, 0]], 1) * 10   # classifies y = [x0 > 0]
        other = torch.stack([-x[:, 1], x[:, 1]], 1) * 10   # unrelated to y
        ops = [[solve, torch.zeros_like(solve), other], [other, torch.zeros_like(solve), solve]]
        return sum(w[r, k] * ops[r][k] for r in range(2) for k in range(3))


def test_keeps_the_op_whose_removal_hurts_most_and_leaves_the_model_alone():
    torch.manual_seed(0)
    x = torch.randn(512, 2)
    batches = [(x[i:i + 128], (x[i:i + 128, 0] > 0).long()) for i in range(0, 512, 128)]
    model = TwoEdges()
    before = model.arch["cell"].alpha.detach().clone()
    assert model.arch["cell"].derive().tolist() == [1, 1]  # argmax α: the useless op
    logs = []
    assert select_by_perturbation(model, "arch.cell", batches, log=logs.append) == [0, 2]
    assert len(logs) == 2 and all("drop when removed" in m for m in logs)
    assert torch.equal(model.arch["cell"].alpha, before)
    assert not model.arch["cell"]._forward_hooks  # the measuring hook is gone
    # the order of the edges is seeded; the decision here does not depend on it
    assert select_by_perturbation(model, "arch.cell", batches, seed=3) == [0, 2]


def test_never_keeps_a_candidate_the_mask_pruned():
    torch.manual_seed(0)
    x = torch.randn(512, 2)
    batches = [(x[i:i + 128], (x[i:i + 128, 0] > 0).long()) for i in range(0, 512, 128)]
    model = TwoEdges()
    # row 0 loses its solving op a, row 1 its c: the rest of each row is kept and measured
    model.arch["cell"].set_mask(torch.tensor([[False, True, True], [True, True, False]]))
    logs = []
    chosen = select_by_perturbation(model, "arch.cell", batches, log=logs.append)
    assert chosen[0] != 0 and chosen[1] != 2
    assert all(m.count("drop when removed") == 1 for m in logs)
    assert [m.split("removed: ")[1].count(",") for m in logs] == [1, 1]  # two kept candidates measured per row


@pytest.mark.slow
def test_derive_tool_perturbation_on_a_search_checkpoint(tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "nas", "quickstart", "space.C=4", "data.subset=300",
                        "trainer.epochs=1", "trainer.max_steps_per_epoch=3", "--out", str(run), "--quiet"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    out = tmp_path / "pt.yaml"
    r = subprocess.run([sys.executable, "-m", "nas.commands.derive", str(run), "--method", "perturbation", "--batches", "2",
                        "--tune-steps", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    arch = yaml.safe_load(out.read_text())["arch"]
    assert arch.count("~") == 6 and arch in r.stdout
    assert r.stderr.count("drop when removed") == 6  # one decision per NB201 edge
    r = subprocess.run([sys.executable, "-m", "nas.commands.derive", str(run), "--method", "perturbation", "--batches", "0"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--batches" in r.stderr
