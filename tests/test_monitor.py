"""Monitoring: the TensorBoard events of a search read back with TensorBoard's own reader (tags
and values against the checkpoint and hand formulas), the drawn images, generic module/noise/
discrete hooks, and progress bars vs one line per epoch."""
import io
import json
import logging
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from torch import nn

from nas.config import load_config
from nas.estimators.base import Estimator, Sample
from nas.engine.checkpoint import load_checkpoint
from nas.spaces import get_space
from nas.searcher.figures import cell_diagram, cell_edges, colormap, heatmap
from nas.utils.draw import PALETTE as _PALETTE
from nas.engine.monitor import Monitor, log, setup_logging, to_chw_uint8
from nas.searcher.summaries import SearchSummaries, entropies
from nas.searcher.run import run_search
from nas.supernet import Choice
from nas.spaces.nb201 import EDGE_NAMES, OPS, NB201Genotype
from nas.spaces.base import Supernet

TINY = ["trainer.max_steps_per_epoch=2", "space.C=4", "space.N=1", "data.resize=8",
        "data.batch_size=16", "data.subset=120", "device=cpu"]


def read_events(tb_dir):
    ea = event_accumulator.EventAccumulator(str(tb_dir), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
    ea.Reload()
    return ea


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: far faster on one thread than on two busy cores
    try:
        out = tmp_path_factory.mktemp("run")
        cfg = load_config(None, TINY + ["trainer.epochs=3", "optim.weights.lr=0.05", "optim.weights.lr_min=0.001"])
        run_search(cfg, out, quiet=True)
    finally:
        torch.set_num_threads(n)
    return out, cfg


def scalar(ea, tag):
    return {e.step: e.value for e in ea.Scalars(tag)}


def test_search_events_have_every_tag_and_the_right_values(finished_run):
    out, cfg = finished_run
    ea = read_events(out / "tb")
    tags = ea.Tags()
    metrics = json.loads((out / "metrics.json").read_text())
    ckpt = load_checkpoint(out)
    epochs = cfg.trainer.epochs

    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr/weights", "lr/arch",
                "estimator/tau", "entropy/cell/mean"):
        assert sorted(scalar(ea, tag)) == list(range(1, epochs + 1)), tag
    # the logged epoch metrics are the history the run kept
    for h in metrics["history"]:
        assert scalar(ea, "train/loss")[h["epoch"]] == pytest.approx(h["train_loss"], rel=1e-6)
        assert scalar(ea, "val/acc")[h["epoch"]] == pytest.approx(h["search_val_acc"], rel=1e-6)
    # cosine learning rate after each epoch: lr_min + (lr0 - lr_min)(1 + cos(pi t / T))/2
    w = cfg.optim.weights
    for t, v in scalar(ea, "lr/weights").items():
        assert v == pytest.approx(w.lr_min + (w.lr - w.lr_min) * (1 + math.cos(math.pi * t / epochs)) / 2, rel=1e-6)
    assert list(scalar(ea, "lr/arch").values()) == pytest.approx([cfg.optim.arch.lr] * epochs)

    # per-edge probabilities and entropies of the last epoch = softmax(alpha) of the final checkpoint
    p = F.softmax(ckpt["model"]["arch.cell.alpha"].float() / 1.0, -1)
    for e, edge in enumerate(EDGE_NAMES):
        for k, op in enumerate(OPS):
            assert scalar(ea, f"probs/cell/{edge}/{op}")[epochs] == pytest.approx(float(p[e, k]), abs=1e-6)
        h = -(p[e] * p[e].log()).sum()
        assert scalar(ea, f"entropy/cell/{edge}")[epochs] == pytest.approx(float(h), abs=1e-6)
    assert scalar(ea, "entropy/cell/mean")[epochs] == pytest.approx(float(-(p * p.log()).sum(-1).mean()), abs=1e-6)

    # genotype text per epoch; the last one is the derived genotype
    texts = ea.Tensors("genotype/text_summary")
    assert [t.step for t in texts] == list(range(1, epochs + 1))
    assert texts[-1].tensor_proto.string_val[0].decode() == metrics["genotype"]

    # images per epoch: the heatmap and the derived cell, valid PNGs
    assert set(tags["images"]) == {"choices/cell", "cell/cell"}
    for tag in ("choices/cell", "cell/cell"):
        ims = ea.Images(tag)
        assert [i.step for i in ims] == list(range(1, epochs + 1))
        img = Image.open(io.BytesIO(ims[-1].encoded_image_string))
        assert img.format == "PNG" and (img.width, img.height) == (ims[-1].width, ims[-1].height)
        assert img.width > 300 and img.height > 150
    # the heatmap has 6 rows of 5 cells whose colours are the probabilities
    heat = Image.open(io.BytesIO(ea.Images("choices/cell")[-1].encoded_image_string)).convert("RGB")
    assert len(heat.getcolors(maxcolors=100000)) > 20

    # hparams session with the final metrics, custom-scalars layout of the probability curves
    hp = ea.PluginTagToContent("hparams")
    assert set(hp) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    from tensorboard.plugins.hparams import plugin_data_pb2
    start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["estimator.name"].string_value == "softmax"
    assert start.hparams["trainer.epochs"].number_value == epochs
    assert scalar(ea, "hparams/val_acc")[epochs] == pytest.approx(metrics["val_acc"], rel=1e-6)
    from tensorboard.plugins.custom_scalar import layout_pb2
    assert "custom_scalars__config__" in ea.PluginTagToContent("custom_scalars")
    layout = layout_pb2.Layout.FromString(ea.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: c.multiline.tag for cat in layout.category for c in cat.chart}
    assert len(charts) == len(EDGE_NAMES)
    import re
    for title, regexes in charts.items():
        matched = [t for t in tags["scalars"] if any(re.fullmatch(r, t) for r in regexes)]
        assert len(matched) == len(OPS), title


def test_log_file_has_one_line_per_epoch_with_genotype(finished_run):
    out, cfg = finished_run
    lines = [l for l in (out / "log.txt").read_text().splitlines() if " epoch " in f" {l.split(' ', 1)[1]}"]
    assert len(lines) == cfg.trainer.epochs
    assert all("train_loss=" in l and "estimator/tau=" in l and "genotype=|" in l for l in lines)


# ----------------------------------------------------------------------------- generic hooks

class Flat(Estimator):
    """A test estimator with one parameter per role, so the generic hooks have something to read."""

    name = "flat"

    def create(self, shape, kind, init_std=1e-3, generator=None):
        return {"alpha": (torch.zeros(shape), "logits"), "state": (torch.zeros(shape), "discrete"),
                "sigma": (torch.linspace(0.1, 0.4, math.prod(shape)).view(shape), "noise")}

    def sample(self, params, kind, training):
        return Sample(self.probs(params, kind))

    def probs(self, params, kind):
        return F.softmax(params["alpha"].detach(), -1) if kind == "categorical" else torch.sigmoid(params["alpha"].detach())

    def scalars(self):
        return {"flips": 7.0}


class Gates(nn.Module):
    def scalars(self):
        return {"penalty": 0.25, "open": 3}


class Toy(Supernet):
    def __init__(self):
        super().__init__()
        est = Flat()
        self.arch = nn.ModuleDict({"cell": Choice(est, 3, ["a", "b"], labels=["e0", "e1", "e2"]),
                                   "gate": Choice(est, 4, kind="binary")})
        self.gates = Gates()

    def genotype(self):
        return NB201Genotype(("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"))


def test_generic_hooks_noise_flips_module_scalars_and_binary_choices(tmp_path):
    model = Toy()
    mon = Monitor(tmp_path / "tb", epochs=2, quiet=True)
    summ = SearchSummaries(mon, model, get_space("nb201"))  # the space draws its genotype's cell
    with torch.no_grad():
        model.arch["cell"].alpha[0, 1] = math.log(3.0)  # p(e0) = (1/4, 3/4)
        model.arch["cell"].state[1, 0] = 1.0             # two entries flip during "epoch 1"
        model.arch["gate"].state[2] = 1.0
    s = summ.scalars()
    assert s["probs/cell/e0/b"] == pytest.approx(0.75)
    assert s["entropy/cell/e0"] == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert s["entropy/gate/mean"] == pytest.approx(math.log(2))  # sigmoid(0) = 1/2 on every gate
    assert s["probs/gate/3"] == pytest.approx(0.5)
    assert s["discrete/cell/changed"] == 1 and s["discrete/gate/changed"] == 1
    sig = torch.linspace(0.1, 0.4, 6)
    assert (s["noise/cell/mean"], s["noise/cell/min"], s["noise/cell/max"]) == pytest.approx(
        (float(sig.mean()), 0.1, 0.4))
    assert s["gates/penalty"] == 0.25 and s["gates/open"] == 3
    assert summ.scalars()["discrete/cell/changed"] == 0  # nothing moved since
    summ.write(1, model.genotype())
    mon.close()
    ea = read_events(tmp_path / "tb")
    assert set(ea.Tags()["images"]) == {"choices/cell", "choices/gate", "cell/cell"}
    assert "gates/open" in ea.Tags()["scalars"] and "noise/gate/max" in ea.Tags()["scalars"]


def test_entropies_by_hand():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    assert entropies(p).tolist() == pytest.approx([math.log(2), 0.0])
    g = torch.tensor([0.5, 0.0, 0.9])
    assert entropies(g).tolist() == pytest.approx([math.log(2), 0.0, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))])


# ----------------------------------------------------------------------------- drawing

def test_heatmap_colours_are_the_probabilities():
    assert colormap(0.0) == (68, 1, 84) and colormap(1.0) == (253, 231, 37)
    assert colormap(0.5) == (33, 145, 140)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    img = heatmap(p, ["r0", "r1", "r2"], ["a", "b"])
    colours = img.getcolors(maxcolors=100000)
    count = {c: n for n, c in colours}
    # two cells of each of p=1 and p=0, two cells of p=0.5, each ~ cell_w x 30 px minus text
    assert count.get((253, 231, 37), 0) > 2 * 1000 and count.get((68, 1, 84), 0) > 2 * 1000
    assert count.get((33, 145, 140), 0) > 2 * 1000
    gates = heatmap(torch.tensor([0.0, 1.0, 0.25]), ["g0", "g1", "g2"], [])
    assert gates.width < img.width + 60  # a single P(open) column


def test_cell_diagram_draws_kept_edges_in_their_op_colour():
    g = NB201Genotype(("nor_conv_3x3", "none", "skip_connect", "none", "none", "avg_pool_3x3"))
    edges = cell_edges(get_space("nb201"), g)["cell"]
    assert edges[0] == (1, 0, "nor_conv_3x3") and len(edges) == 6
    img = cell_diagram(edges)
    colours = {c for _, c in img.getcolors(maxcolors=100000)}
    kept = sorted({"nor_conv_3x3", "skip_connect", "avg_pool_3x3"})
    assert all(_PALETTE[i] in colours for i in range(len(kept)))
    assert _PALETTE[len(kept)] not in colours  # 'none' edges are not drawn
    empty = cell_diagram(cell_edges(get_space("nb201"), NB201Genotype(("none",) * 6))["cell"])
    assert empty.width > 300
    t = to_chw_uint8(img)
    assert t.shape == (3, img.height, img.width) and t.dtype == torch.uint8
    assert tuple(t[:, 0, 0].tolist()) == img.getpixel((0, 0))


def test_cell_edges_of_a_darts_genotype():
    """DARTS (Liu et al. 2019): nodes 0 and 1 are the cell inputs; the pair 2i, 2i+1 feeds node i + 2."""
    from nas.spaces.darts import Genotype
    g = Genotype(normal=(("sep_conv_3x3", 0), ("skip_connect", 1), ("sep_conv_5x5", 2), ("dil_conv_3x3", 0)),
                 normal_concat=(2, 3), reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                                               ("max_pool_3x3", 1)), reduce_concat=(2, 3))
    e = cell_edges(get_space("darts"), g)
    assert e["normal"] == [(2, 0, "sep_conv_3x3"), (2, 1, "skip_connect"), (3, 2, "sep_conv_5x5"), (3, 0, "dil_conv_3x3")]
    assert e["reduce"] == [(2, 0, "max_pool_3x3"), (2, 1, "max_pool_3x3"), (3, 2, "skip_connect"), (3, 1, "max_pool_3x3")]
    from nas.spaces.dnf import DNFGenotype
    assert cell_edges(get_space("dnf"), DNFGenotype(("x0",), ("0", "1"), (("1", ()),))) == {}  # no cells to draw


# ----------------------------------------------------------------------------- progress

class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_bars_on_a_terminal_show_loss_acc_and_temperature(monkeypatch, tmp_path):
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    setup_logging(tmp_path / "log.txt", quiet=False)
    mon = Monitor(None, epochs=2)
    assert mon.bars
    mon.start(0)
    mon.start_epoch(0, steps=3)
    mon.step({"loss": 2.25, "acc": 12.5, "tau": 0.5})
    assert mon.step_bar.n == 1
    assert mon.step_bar.postfix == "loss=2.25, acc=12.5, tau=0.5"
    mon.end_epoch(0, {"train_loss": 2.0, "train_acc": 30.0}, {"estimator/tau": 0.5})
    assert mon.step_bar is None and mon.epoch_bar.n == 1
    assert mon.epoch_bar.postfix == "train_loss=2, train_acc=30, tau=0.5"
    mon.close()
    assert "epoch 1/2 train_loss" not in err.getvalue()  # the bar, not a log line, on a terminal
    assert "epoch 1/2 train_loss=2 train_acc=30 estimator/tau=0.5" in (tmp_path / "log.txt").read_text()
    setup_logging(None, quiet=True)


@pytest.mark.parametrize("quiet", [False, True])
def test_no_terminal_or_quiet_gives_one_line_per_epoch(monkeypatch, tmp_path, quiet):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    setup_logging(tmp_path / "log.txt", quiet=quiet)
    mon = Monitor(None, epochs=2, quiet=quiet)
    assert not mon.bars
    mon.start(0)
    for epoch in range(2):
        mon.start_epoch(epoch, steps=3)
        for _ in range(3):
            mon.step({"loss": 1.0, "acc": 50.0, "tau": 1.0})
        mon.end_epoch(epoch, {"train_loss": 1.0, "train_acc": 50.0}, {"estimator/tau": 1.0}, note="genotype=x")
    mon.close()
    lines = err.getvalue().splitlines()
    assert lines == ([] if quiet else ["epoch 1/2 train_loss=1 train_acc=50 estimator/tau=1",
                                       "epoch 2/2 train_loss=1 train_acc=50 estimator/tau=1"])
    logged = (tmp_path / "log.txt").read_text().splitlines()
    assert len(logged) == 2 and all(l.endswith("genotype=x") for l in logged)
    setup_logging(None, quiet=True)
    assert not log.handlers or all(not isinstance(h, logging.FileHandler) for h in log.handlers)


def test_search_on_a_terminal_shows_bars_with_loss_acc_and_temperature(monkeypatch, tmp_path):
    err = FakeTTY()
    monkeypatch.setattr(sys, "stderr", err)
    postfixes = []
    step = Monitor.step
    monkeypatch.setattr(Monitor, "step", lambda self, p: (postfixes.append(dict(p())), step(self, p)))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_search(load_config(None, TINY + ["trainer.epochs=2", "estimator.name=gumbel_hard"]), tmp_path / "r")
    finally:
        torch.set_num_threads(n)
        setup_logging(None, quiet=True)
    shown = err.getvalue()
    assert "search: 100%" in shown and "2/2" in shown           # the epoch bar, left on screen
    assert "train_loss=" in shown and "train_acc=" in shown and "tau=0.1" in shown
    assert "epoch 1/2 train_loss" not in shown                  # no log lines on a terminal
    assert len(postfixes) == 4 and all({"loss", "acc", "tau"} <= set(p) for p in postfixes)
    assert [p["tau"] for p in postfixes] == [10.0, 10.0, pytest.approx(0.1), pytest.approx(0.1)]  # GDAS τ 10 -> 0.1


def test_a_callable_postfix_is_read_only_when_the_bar_redraws(monkeypatch, tmp_path):
    """Step values that live on an accelerator are read (a device sync) at most 4 times a second."""
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    setup_logging(tmp_path / "log.txt", quiet=False)
    clock = [100.0]
    monkeypatch.setattr("nas.engine.monitor.time.monotonic", lambda: clock[0])
    mon = Monitor(None, epochs=1)
    mon.start(0)
    mon.start_epoch(0, steps=10)
    reads = []

    def values():
        reads.append(clock[0])
        return {"loss": float(len(reads))}

    for _ in range(5):  # the same instant: read once
        mon.step(values)
    clock[0] += 0.3
    mon.step(values)
    assert reads == [100.0, 100.3] and mon.step_bar.n == 6 and mon.step_bar.postfix == "loss=2"
    mon.close()
    setup_logging(None, quiet=True)
    # without bars (quiet, or no terminal) nothing is read at all
    quiet = Monitor(None, epochs=1, quiet=True)
    quiet.start(0)
    quiet.start_epoch(0, steps=3)
    quiet.step(values)
    assert len(reads) == 2
