"""Retraining a derived genotype from scratch: the run folder, the real test split, exact resume,
Cutout and drop-path, and one-line errors for bad genotypes (nas-retrain)."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from nas.config import load_config
from nas.data import build_eval_loaders
from nas.errors import CheckpointError, ConfigError
from nas.retrainer import RetrainConfig, make_network, resolve_genotype, run_retrain
from nas.retrainer.augment import cutout
from nas.retrainer.trainer import Trainer
from nas.utils import count_macs, count_params
from nas.spaces.darts import GENOTYPES

REPO = Path(__file__).resolve().parents[1]
NB201_ARCH = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
TINY = ["data.subset=96", "data.test_subset=64", "data.resize=8", "data.batch_size=32",
        "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "device=cpu"]
DARTS_TINY = ["model.C=4", "model.layers=3", "data.cutout=4", "model.drop_path_prob=0.2"]


def retrain_cli(*argv):
    from nas.commands import retrain as t
    return t.main(t.get_args_parser().parse_intermixed_args(list(argv)))


@pytest.mark.parametrize("config, genotype, extra", [
    ("retrain_nb201_digits", NB201_ARCH, ["model.C=4"]),
    ("retrain_darts_digits", "DARTS_V2", DARTS_TINY),
])
def test_retrain_one_epoch_writes_a_run_folder(tmp_path, capsys, config, genotype, extra):
    out = tmp_path / "run"
    assert retrain_cli(f"configs/{config}.yaml", *TINY, *extra, "--genotype", genotype,
                       "--out", str(out), "--quiet") == 0
    printed = capsys.readouterr().out
    for f in ("config.yaml", "genotype.yaml", "checkpoint.pt", "log.txt", "metrics.json"):
        assert (out / f).is_file(), f
    assert list((out / "tb").glob("events.out.tfevents.*"))
    m = json.loads((out / "metrics.json").read_text())
    cfg = load_config(out / "config.yaml", cls=RetrainConfig)
    space, g = resolve_genotype(str(out))
    assert str(g) == m["genotype"] and f"genotype: {g}" in printed
    # params (auxiliary head excluded) and MACs in millions, of the network that was trained
    net = make_network(cfg, space, g, 10, 3)
    assert m["params_m"] == pytest.approx(count_params(net) / 1e6, abs=1e-6)
    assert m["macs_m"] == pytest.approx(count_macs(net, (3, 8, 8)) / 1e6, abs=1e-3) and m["macs_m"] > 0
    # the test accuracy is the checkpointed network's accuracy on the real test split
    train, test, info = build_eval_loaders("digits", root=None, download=False, resize=8, subset=96,
                                           batch_size=32, workers=0, seed=0, device="cpu", augment=False,
                                           test_subset=64)
    assert info["n_test"] == 64
    net.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=False)["model"])
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in test)
    assert m["test_acc"] == pytest.approx(100.0 * correct / 64)
    assert m["epochs"] == 1 and len(m["history"]) == 1


def test_darts_retrain_resume_is_exact_and_seeded(tmp_path):
    """Cutout, drop-path, auxiliary head and data order all continue exactly after a resume."""
    args = ["configs/retrain_darts_digits.yaml", *TINY, *DARTS_TINY, "trainer.epochs=2", "--quiet"]
    assert retrain_cli(*args, "--out", str(tmp_path / "full")) == 0
    assert retrain_cli(*args, "trainer.epochs=1", "--out", str(tmp_path / "part")) == 0
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert ck["epoch"] == 1
    assert retrain_cli("trainer.epochs=2", "--quiet", "--resume", str(tmp_path / "part")) == 0
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"] for d in ("full", "part"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = tmp_path / "seed1"
    assert retrain_cli(*args, "seed=1", "--out", str(c)) == 0
    kc = torch.load(c / "checkpoint.pt", weights_only=False)["model"]
    assert not torch.equal(a["classifier.weight"], kc["classifier.weight"])


def test_cutout_by_hand():
    g = torch.Generator().manual_seed(3)
    x = torch.ones(5, 2, 8, 8)
    y = cutout(x, 4, g)
    g2 = torch.Generator().manual_seed(3)
    cy, cx = torch.randint(0, 8, (5, 1), generator=g2), torch.randint(0, 8, (5, 1), generator=g2)
    for b in range(5):
        want = torch.ones(8, 8)
        y1, y2 = max(int(cy[b]) - 2, 0), min(int(cy[b]) + 2, 8)
        x1, x2 = max(int(cx[b]) - 2, 0), min(int(cx[b]) + 2, 8)
        want[y1:y2, x1:x2] = 0   # DARTS Cutout: mask[y1:y2, x1:x2] = 0, clipped at the borders
        assert torch.equal(y[b, 0], want) and torch.equal(y[b, 1], want)
    assert cutout(x, 0, g) is x


def test_drop_path_ramps_linearly_and_aux_loss_is_weighted():
    torch.manual_seed(0)
    space, g = resolve_genotype("DARTS_V2")
    net = space.build_network(g, num_classes=3, C=4, layers=3, auxiliary=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 4)
    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,)))]
    tr = Trainer(net, opt, sched, batches, epochs=4, drop_path_prob=0.2, aux_weight=0.4)
    seen = []
    for epoch in range(4):
        tr.train_epoch(epoch)
        seen.append(net.drop_path_prob)
    assert seen == pytest.approx([0.0, 0.05, 0.1, 0.15])
    # lr 0 keeps the weights: the logged loss is L + 0.4·L_aux of the same forward
    net.drop_path_prob = 0.0
    tr.drop_path_prob = 0.0
    torch.manual_seed(1)
    logits, aux = net(batches[0][0])
    F = torch.nn.functional
    want = F.cross_entropy(logits, batches[0][1]) + 0.4 * F.cross_entropy(aux, batches[0][1])
    torch.manual_seed(1)
    got = tr.train_epoch(0)["train_loss"]
    assert got == pytest.approx(float(want.detach()), rel=1e-5)


@pytest.mark.parametrize("content, msg", [
    ("space: darts\nnormal: [[sep_conv_3x3, 0]]\n", "missing normal_concat"),
    ("space: nb201\narch: '|nor_conv_3x3~0|+|bad|'\n", "genotype"),
    ("space: nope\narch: x\n", "unknown or missing 'space'"),
    ("normal: [\n", "not valid YAML"),
])
def test_bad_genotype_file_is_one_line_error(tmp_path, capsys, content, msg):
    bad = tmp_path / "genotype.yaml"
    bad.write_text(content)
    with pytest.raises(CheckpointError, match=msg):
        resolve_genotype(str(bad))
    assert retrain_cli(*TINY, "--genotype", str(bad), "--out", str(tmp_path / "r"), "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas-retrain: error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_genotype_sources_and_config_errors(tmp_path):
    assert resolve_genotype("DARTS_V1")[1] == GENOTYPES["DARTS_V1"]
    assert resolve_genotype(repr(GENOTYPES["PC_DARTS"]))[1] == GENOTYPES["PC_DARTS"]
    space, g = resolve_genotype(NB201_ARCH)
    assert space.name == "nb201" and str(g) == NB201_ARCH
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump({"arch": NB201_ARCH}))  # hand-written, no 'space' key
    assert resolve_genotype(str(f))[1] == g
    with pytest.raises(ConfigError, match="not a file or folder"):
        resolve_genotype("DARTS_V9")
    with pytest.raises(CheckpointError, match="no genotype.yaml"):
        resolve_genotype(str(tmp_path))
    cfg = load_config("retrain_nb201_digits", ["model.auxiliary=true"], cls=RetrainConfig)
    with pytest.raises(ConfigError, match="model.auxiliary"):
        make_network(cfg, space, g, 10, 3)
    for name in ("retrain_nb201_cifar10", "retrain_darts_cifar10", "retrain_nb201_digits", "retrain_darts_digits"):
        load_config(name, cls=RetrainConfig)  # every shipped config is valid


def test_shipped_recipes():
    d = load_config("retrain_darts_cifar10", cls=RetrainConfig)
    assert (d.trainer.epochs, d.data.batch_size, d.optim.lr, d.optim.weight_decay, d.optim.momentum) == \
        (600, 96, 0.025, 3e-4, 0.9)
    assert (d.data.cutout, d.model.drop_path_prob, d.model.auxiliary_weight, d.trainer.grad_clip) == (16, 0.2, 0.4, 5.0)
    assert (d.model.C, d.model.layers, d.model.auxiliary, d.model.genotype) == (36, 20, True, "DARTS_V2")
    n = load_config("retrain_nb201_cifar10", cls=RetrainConfig)
    assert (n.trainer.epochs, n.data.batch_size, n.optim.lr, n.optim.weight_decay, n.optim.nesterov) == \
        (200, 256, 0.1, 5e-4, True)
    assert (n.model.C, n.model.N, n.optim.lr_min, n.data.augment) == (16, 5, 0.0, True)
