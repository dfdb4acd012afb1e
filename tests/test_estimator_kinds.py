"""One estimator per kind of discrete parameter (``estimator.kinds``): each block learns with its
kind's estimator (the op choice with ``estimator.name``, DNF rule pools by default with the STE
and adaptive noise, L0 gates by default with hard concrete); bad kinds are one-line errors;
checkpoints resume bitwise, TensorBoard names each kind's values, two ranks follow one process
with mixed estimators."""
from pathlib import Path

import pytest
import torch

from nas.blocks.dnf import DNFOp
from nas.blocks.l0 import EstimatorGate, HardConcreteGate
from nas.cli import main
from nas.config import load_config
from nas.errors import ConfigError
from nas.estimators import CATEGORICAL, ESTIMATORS, AdaptiveNoise, BopEstimator, STE
from nas.estimators.kinds import EstimatorSet
from nas.estimators.surrogate import Softmax
from nas.searcher.run import make_estimator, make_supernet, run_search

from test_resume import assert_same, load_checkpoint

OPS = "space.ops=[none, skip_connect, nor_conv_3x3, dnf_1x1, l0_nor_conv_3x3]"
TINY = ["device=cpu", "space.C=4", "space.N=1", "data.resize=8", "data.subset=96", "data.batch_size=16",
        "trainer.max_steps_per_epoch=2", "trainer.bn_batches=1", OPS, "space.op_args={dnf_1x1: {rules: 2}}"]
MIXED = ["space.gates=edge", "estimator.kinds={rules: bop+noise, gates: {name: bop, threshold: 1.0e-6}}"]


def built(*overrides):
    cfg = load_config(None, TINY + list(overrides))
    est = make_estimator(cfg)
    _, model = make_supernet(cfg, est, 10, 3)
    return est, model


def dnf_estimators(model):
    return {id(c.estimator): c.estimator for m in model.modules() if isinstance(m, DNFOp)
            for c in (m.block.W, m.block.S)}


def test_each_kind_defaults_to_its_blocks_estimator():
    est, model = built()
    assert isinstance(est, EstimatorSet) and isinstance(est.main, Softmax)
    assert model.arch["cell"].estimator is est                     # the op choice: estimator.name
    (rules,) = dnf_estimators(model).values()                      # one estimator for every rule pool
    assert isinstance(rules, AdaptiveNoise) and isinstance(rules.base, STE)
    gates = [m.gate for m in model.modules() if hasattr(m, "open_channels")]
    assert gates and all(isinstance(g, HardConcreteGate) for g in gates)
    assert "rules=AdaptiveNoise(STE" in repr(est) and "gates" not in repr(est)


def test_named_kinds_learn_their_blocks_and_the_set_routes_each_estimators_parameters():
    est, model = built(*MIXED)
    (rules,) = dnf_estimators(model).values()
    assert isinstance(rules, AdaptiveNoise) and isinstance(rules.base, BopEstimator)
    gates = [m for m in model.modules() if isinstance(m, EstimatorGate)]
    assert gates and all(isinstance(g.choice.estimator, BopEstimator) and g.choice.estimator is not rules.base
                         for g in gates)
    assert gates[0].choice.estimator.values["threshold"] == 1e-6
    # the discrete optimizer: one Bop per estimator, each over its own states only
    from nas.searcher.optim import build_optimizers
    opts = build_optimizers(model, est, epochs=1)
    by_threshold = {g["threshold"]: {id(p) for p in g["params"]} for g in opts.discrete.param_groups}
    gate_states = {id(g.choice.state) for g in gates}
    assert by_threshold[1e-6] == gate_states
    assert by_threshold[rules.base.values["threshold"]].isdisjoint(gate_states)
    # after a step each noise wrapper clips only its own σ
    sig = [m.block.W.sigma for m in model.modules() if isinstance(m, DNFOp)]
    with torch.no_grad():
        for s in sig:
            s.fill_(9.0)
    est.after_step(opts.arch_params)
    assert all(float(s.detach().max()) == rules.sigma_max for s in sig)
    assert "rules/sigma_mean" in est.scalars()


class CategoricalOnly(Softmax):
    name = "categorical_only"
    kinds = (CATEGORICAL,)


@pytest.mark.parametrize("kinds,message", [
    ("{bogus: ste}", "estimator.kinds.bogus: unknown kind 'bogus'; allowed: gates, ops, program, rules"),
    ("{gates: categorical_only}", "estimator.kinds.gates: estimator 'categorical_only' learns only categorical "
                                  "choices and kind 'gates' is binary"),
    ("{rules: ste+nois}", "estimator.kinds.rules: estimator spec 'ste+nois': use NAME or NAME+noise"),
    ("{rules: {name: softmax, gamma: 1}}", "estimator.kinds.rules: estimator.gamma is not used by estimator 'softmax'"),
    ("{ops: ste}", "estimator.kinds.ops: 'ops' is this space's main kind"),
])
def test_a_bad_kind_is_one_line_naming_the_kind_and_the_estimator(tmp_path, capsys, monkeypatch, kinds, message):
    monkeypatch.setitem(ESTIMATORS._items, "categorical_only", CategoricalOnly)
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("+", r"\+")):
        built(f"estimator.kinds={kinds}")
    code = main(["quickstart", "--out", str(tmp_path / "r"), f"estimator.kinds={kinds}", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message.split(":")[0] in err[0], err


def test_gate_estimator_search_and_kinds_gates_together_are_refused():
    with pytest.raises(ConfigError, match="space.gate_estimator=search and estimator.kinds.gates"):
        built("space.gates=edge", "space.gate_estimator=search", "estimator.kinds={gates: ste}")


@pytest.mark.slow
def test_mixed_estimators_resume_bitwise_and_write_each_kinds_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = load_config(None, TINY + MIXED + ["trainer.epochs=2"])
    torch.set_num_threads(1)
    full = run_search(cfg, tmp_path / "full", quiet=True)
    run_search(cfg, tmp_path / "split", quiet=True, stop_after=1)
    resumed = run_search(cfg, tmp_path / "split", quiet=True, resume=True)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "split")
    for key in ("model", "optim", "estimator"):
        assert_same(a[key], b[key], key)
    assert_same(a["rng"]["torch"], b["rng"]["torch"], "rng")
    assert len(a["optim"]["discrete"]["optimizers"]) == 2 and a["optim"]["discrete"]["optimizers"][1]["state"]
    assert set(a["estimator"]["kinds"]) == {"rules", "gates"}
    assert resumed.genotype_str == full.genotype_str
    ea = EventAccumulator(str(tmp_path / "full" / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"estimator/rules/sigma_mean", "estimator/gates/gamma", "estimator/rules/gamma"} <= tags, tags


@pytest.mark.slow
def test_two_ranks_with_mixed_estimators_follow_one_process(tmp_path):
    from test_distributed import ok, ranks, single, torchrun
    overrides = TINY + MIXED + ["trainer.epochs=1", "trainer.sync_bn=true", "data.batch_size=32",
                                "data.subset=192", "trainer.max_steps_per_epoch=3"]
    out = tmp_path / "two"
    ok(torchrun({"float64": True, "runs": [{"out": str(out), "overrides": overrides}]}, timeout=600))
    a, b = ranks(out)
    assert_same(a, b, "rank0 vs rank1")
    _, ref = single(overrides, tmp_path / "one")
    for k, v in ref["model"].items():
        assert torch.allclose(a["model"][k].double(), v.double(), rtol=1e-6, atol=1e-8), k


def test_sigma_end_anneals_the_noise_bound_linearly_per_step_to_the_binary_forward():
    from nas.estimators import build_estimator
    est = build_estimator("ste", noise="adaptive", sigma0=0.4, sigma_max=0.4, sigma_end=0.0)
    sigma = torch.full((3,), 0.4)
    for k, (epoch, step) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        est.set_progress(epoch, 2, step, 2)
        est.after_step({"noise": [sigma]})
        assert est.bound == pytest.approx(0.4 * (1 - k / 3)) and float(sigma.max()) == pytest.approx(est.bound)
    alpha = torch.randn(5)
    w = est.sample({"alpha": alpha, "sigma": torch.zeros(5)}, "binary", training=True).weights
    assert torch.equal(w, (alpha > 0).float())          # σ = 0: the training forward is the derived gate
    assert est.state_dict()["sigma_bound"] == 0.0 and est.scalars()["sigma_bound"] == 0.0
    with pytest.raises(ConfigError, match="estimator.sigma_end anneals adaptive noise"):
        build_estimator("ste", sigma_end=0.0)
    with pytest.raises(ConfigError, match=r"estimator.sigma_end must lie in \[0, estimator.sigma_max=0.5\]"):
        build_estimator("ste", noise="adaptive", sigma_end=0.7)
