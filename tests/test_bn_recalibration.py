"""BN recalibration of a supernet before its final eval-mode score (nas/supernet/bn.py)."""
import json

import pytest
import torch
from torch import nn

from nas.cli import main
from nas.estimators import build_estimator
from nas.supernet import Choice, recalibrate_bn
from nas.spaces import get_space
from nas.spaces.nb201 import OPS


def gdas_supernet(fused=False):
    torch.manual_seed(0)
    # unfused: the test below hooks the op's own BN module, which the fused path does not call
    model = get_space("nb201").build_supernet(build_estimator("gumbel_hard"), num_classes=3, C=4, N=1,
                                              generator=torch.Generator().manual_seed(0), fused=fused)
    # eval mode takes argmax α: nor_conv_3x3 on every edge
    with torch.no_grad():
        model.arch["cell"].alpha.zero_()
        model.arch["cell"].alpha[:, OPS.index("nor_conv_3x3")] = 1.0
    return model


def test_statistics_are_the_average_over_the_batches_of_the_eval_path():
    model = gdas_supernet()
    model.train()
    for _ in range(5):  # sampled paths fill the running statistics with a mix
        model(torch.randn(8, 3, 8, 8) * 3 + 1)
    edge0 = model.cells[0].edges[0]
    on_path = edge0.ops[OPS.index("nor_conv_3x3")][-1]
    off_path = edge0.ops[OPS.index("nor_conv_1x1")][-1]
    assert isinstance(on_path, nn.BatchNorm2d) and isinstance(off_path, nn.BatchNorm2d)
    off_before = {k: v.clone() for k, v in off_path.state_dict().items()}
    seen = []
    hook = on_path.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    batches = [(torch.randn(6, 3, 8, 8), torch.zeros(6, dtype=torch.long)) for _ in range(3)]
    assert recalibrate_bn(model, batches) == 3
    hook.remove()
    assert len(seen) == 3  # the 3x3 conv of edge 0 ran once per batch: the eval (argmax) path
    mean = torch.stack([x.mean((0, 2, 3)) for x in seen]).mean(0)
    var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in seen]).mean(0)
    assert torch.allclose(on_path.running_mean, mean, atol=1e-6)
    assert torch.allclose(on_path.running_var, var, atol=1e-5)
    assert int(on_path.num_batches_tracked) == 3 and on_path.momentum == 0.1
    # a BN the eval path does not reach keeps what it had
    for k, v in off_path.state_dict().items():
        assert torch.equal(v, off_before[k]), k
    assert not model.training and not any(m.training for m in model.modules())


def test_fused_supernet_recalibrates_to_the_same_statistics():
    states = []
    for fused in (False, True):
        model = gdas_supernet(fused).double()
        model.train()
        torch.manual_seed(1)
        for _ in range(3):
            model(torch.randn(8, 3, 8, 8, dtype=torch.double) * 3 + 1)
        recalibrate_bn(model, [(torch.randn(6, 3, 8, 8, dtype=torch.double), None) for _ in range(3)])
        states.append(model.state_dict())
    for k, v in states[0].items():
        assert torch.allclose(v, states[1][k], atol=1e-12) if v.is_floating_point() else torch.equal(v, states[1][k]), k


def test_no_batches_changes_nothing():
    model = gdas_supernet()
    model.train()
    model(torch.randn(4, 3, 8, 8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recalibrate_bn(model, []) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(isinstance(c, Choice) and not c.training for c in model.modules() if isinstance(c, Choice))


TINY = ["space.C=4", "space.N=1", "data.subset=256", "data.resize=8", "data.batch_size=32",
        "trainer.epochs=2", "trainer.max_steps_per_epoch=4", "estimator.name=gumbel_hard"]


def test_search_scores_with_recalibrated_statistics_and_keeps_the_checkpoint_as_trained(tmp_path):
    runs = {}
    for n in (0, 3):
        out = tmp_path / f"bn{n}"
        assert main([*TINY, f"trainer.bn_batches={n}", "--out", str(out), "--quiet"]) == 0
        runs[n] = out
    m0, m3 = (json.loads((runs[n] / "metrics.json").read_text()) for n in (0, 3))
    assert m0["genotype"] == m3["genotype"] and m0["history"] == m3["history"]  # the search is the same
    assert m0["val_loss"] != m3["val_loss"]  # only the final score's BN statistics differ
    c0, c3 = (torch.load(runs[n] / "checkpoint.pt", weights_only=False)["model"] for n in (0, 3))
    assert all(torch.equal(c0[k], c3[k]) for k in c0)  # the checkpoint holds the search's own statistics


def test_negative_bn_batches_is_refused_before_the_search(tmp_path, capsys):
    assert main([*TINY, "trainer.bn_batches=-1", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trainer.bn_batches=-1 is out of range; allowed: >= 0" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_eval_batches_limits_or_skips_the_final_score_and_leaves_the_search_alone(tmp_path, monkeypatch):
    """trainer.eval_batches: the first B validation batches score the supernet (0: neither a score nor
    the recalibration for it); the search, its α, checkpoint and cell are those of a full score."""
    from nas.searcher.loop import Searcher
    from nas.supernet import bn

    seen, recalibrated = {}, {}
    evaluate, recalibrate = Searcher.evaluate, bn.recalibrate_bn

    def counting(self, loader, max_batches=None):
        images = []
        out = evaluate(self, ([images.append(len(y)), (x, y)][1] for x, y in loader), max_batches)
        seen[run] = (sum(images[:max_batches]) if max_batches is not None else sum(images), out)
        return out
    monkeypatch.setattr(Searcher, "evaluate", counting)
    monkeypatch.setattr("nas.searcher.run.recalibrate_bn", lambda *a: recalibrated.setdefault(run, recalibrate(*a)))
    runs = {}
    for run in ("null", "2", "0"):
        runs[run] = tmp_path / f"eval{run}"
        assert main([*TINY, "trainer.bn_batches=3", f"trainer.eval_batches={run}", "--out", str(runs[run]),
                     "--quiet"]) == 0
    m = {r: json.loads((runs[r] / "metrics.json").read_text()) for r in runs}
    assert seen["null"][0] == 128 and seen["2"][0] == 64 and "0" not in seen  # the val split: 128 images, batches of 32
    assert recalibrated == {"null": 3, "2": 3}
    for r in ("null", "2"):
        assert (m[r]["val_acc"], m[r]["val_loss"]) == (seen[r][1]["acc"], seen[r][1]["loss"])
    assert m["0"]["val_acc"] is None and m["0"]["val_loss"] is None
    assert "val_acc=off (trainer.eval_batches=0)" in (runs["0"] / "log.txt").read_text()
    for r in ("2", "0"):
        assert m[r]["genotype"] == m["null"]["genotype"] and m[r]["history"] == m["null"]["history"]
        ck, full = (torch.load(runs[x] / "checkpoint.pt", weights_only=False)["model"] for x in (r, "null"))
        assert all(torch.equal(ck[k], full[k]) for k in full)
