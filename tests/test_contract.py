"""The supernet contract, tested for every registered space x every estimator it supports (timm's
``tests/test_models.py`` is the model): a new registry entry is tested here for free.

Each case builds the space's tiny supernet (``SearchSpace.tiny_supernet``), runs a training
forward and backward, checks that every architecture parameter got a finite, non-zero gradient
(for Bop: the gradient that is its discrete update's input), derives, round-trips the genotype
through YAML, reloads the state dict into a freshly initialised supernet (same outputs, same
genotype) and builds the discrete network of the genotype, which runs forward.
"""
import dataclasses

import pytest
import torch
import torch.nn.functional as F
import yaml

from nas.config import Config, from_dict
from nas.errors import ConfigError
from nas.estimators import ESTIMATORS, build_estimator, noise_capable
from nas.estimators.base import ROLES
from nas.spaces import SPACES, get_space
from nas.spaces.base import DATA_KINDS, IMAGE, MAZE, Supernet

CLASSES, BATCH, FEATURES, RES = 3, 4, 5, 8


def estimator_specs(space):
    names = [n for n in ESTIMATORS.names() if set(space.choice_kinds) <= set(ESTIMATORS.get(n).kinds)]
    return names + [f"{n}+noise" for n in noise_capable() if n in names]


CASES = [(s, e) for s in SPACES.names() for e in estimator_specs(get_space(s))]


def build(space, spec, seed=0):
    name, _, noise = spec.partition("+")
    est = build_estimator(name, noise="adaptive" if noise else "none")
    est.set_progress(0, 1)
    model = space.build_supernet(est, num_classes=CLASSES, in_channels=in_channels(space),
                                 generator=torch.Generator().manual_seed(seed), **space.tiny_supernet)
    return model


def in_channels(space):
    return 3 if space.data_kind == IMAGE else FEATURES


def batch(space):
    g = torch.Generator().manual_seed(0)
    if space.data_kind == IMAGE:
        x = torch.randn(BATCH, 3, RES, RES, generator=g)
    elif space.data_kind == MAZE:  # grids of 8x8 images and start cells, sized by the tiny supernet
        from nas.data.maze import MazeInput
        W, H = space.tiny_supernet["width"], space.tiny_supernet["height"]
        x = MazeInput(torch.rand(BATCH, H, W, 64, generator=g),
                      torch.stack([torch.randint(0, W, (BATCH,), generator=g),
                                   torch.randint(0, H, (BATCH,), generator=g)], 1))
    else:  # binary features, as the tabular datasets give them
        x = torch.randint(0, 2, (BATCH, FEATURES), generator=g).float()
    return x, torch.arange(BATCH) % CLASSES


def test_every_space_is_covered():
    assert {s for s, _ in CASES} == set(SPACES.names())
    assert all(len(estimator_specs(get_space(s))) >= len(ESTIMATORS.names()) for s in SPACES.names())


@pytest.mark.parametrize("space_name,spec", CASES)
def test_supernet_contract(space_name, spec):
    space = get_space(space_name)
    torch.manual_seed(0)
    model = build(space, spec)
    assert isinstance(model, Supernet)
    x, y = batch(space)

    model.train()
    logits = model(x)
    assert logits.shape == (BATCH, CLASSES) and torch.isfinite(logits).all()
    loss = F.cross_entropy(logits, y)
    penalty = model.penalty()
    if penalty is not None:
        loss = loss + penalty
    loss.backward()
    arch = {role: model.arch_parameters(role) for role in ROLES}
    assert any(arch.values()), "a supernet has architecture parameters"
    assert model.choices()
    for role, params in arch.items():
        for p in params:
            assert p.grad is not None, f"{role} parameter without a gradient"
            assert torch.isfinite(p.grad).all() and (p.grad != 0).any(), f"{role} gradient {p.grad}"
    n_arch = sum(len(ps) for ps in arch.values())
    assert len(model.weight_parameters()) + n_arch == len(list(model.parameters()))
    assert isinstance(model.scalars(), dict) and isinstance(model.artifacts(), dict)

    genotype = model.genotype()
    data = yaml.safe_load(yaml.safe_dump(space.genotype_to_dict(genotype), sort_keys=False))
    assert space.genotype_from_dict(data) == genotype
    assert data["space"] == space_name

    model.eval()
    other = build(space, spec, seed=1)
    other.load_state_dict(model.state_dict())
    other.eval()
    with torch.no_grad():
        assert torch.allclose(other(x), model(x))
    assert other.genotype() == genotype

    net = space.build_network(genotype, num_classes=CLASSES, in_channels=in_channels(space), **space.tiny_network)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert out.shape == (BATCH, CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize("space_name", SPACES.names())
def test_space_reads_its_own_config_section_and_refuses_the_rest(space_name):
    space = get_space(space_name)
    from nas.data import datasets_of
    cfg = from_dict(Config, {"space": {"name": space_name}, "data": {"dataset": datasets_of(space.data_kind)[0]}})
    declared = [f.name for f in dataclasses.fields(space.options())]
    assert [f.name for f in dataclasses.fields(cfg.space)] == ["name", *declared]
    space.check_config(cfg, space.data_kind)  # the defaults are fine
    kwargs = space.supernet_kwargs(cfg, {})
    assert isinstance(kwargs, dict)
    for kind in DATA_KINDS:
        if kind != space.data_kind:
            with pytest.raises(ConfigError, match=f"the {space_name} space takes {space.data_kind} data"):
                space.check_config(cfg, kind)
    others = {f.name for n in SPACES.names() for f in dataclasses.fields(get_space(n).options())} - set(declared)
    for key in sorted(others):  # another space's key is refused when the config loads
        with pytest.raises(ConfigError, match=rf"^unknown config key 'space\.{key}'.*; allowed under 'space': name") as e:
            from_dict(Config, {"space": {"name": space_name, key: "abc"}})
        assert "\n" not in str(e.value)


# Registered candidates with parameters of their own (a DNF rule pool, L0 channel gates) and the
# cell spaces' L0 gates, taken through each space's own config mapping (supernet_kwargs) as a run
# takes them: the same contract holds.
REGISTERED = [(s, e, gates, gate_est) for s in ("nb201", "darts") for e in ("softmax", "bop")
              for gates, gate_est in (("op", "hard_concrete"), ("channel", "search"))]


@pytest.mark.parametrize("space_name,spec,gates,gate_estimator", REGISTERED)
def test_registered_ops_and_gates_through_the_config(space_name, spec, gates, gate_estimator):
    from nas.searcher.run import make_estimator, make_supernet, run_op_args
    space = get_space(space_name)
    ops = ["skip_connect", "dnf_1x1", "l0_nor_conv_1x1"]
    cfg = from_dict(Config, {"space": dict(name=space_name, ops=ops, gates=gates, gate_estimator=gate_estimator,
                                           op_args={"dnf_1x1": {"rules": 2}}, **space.tiny_supernet),
                             "estimator": {"name": spec}})
    space.check_config(cfg, space.data_kind)
    torch.manual_seed(0)
    _, model = make_supernet(cfg, make_estimator(cfg), CLASSES, 3)
    assert [type(o).__name__ for o in model.modules() if type(o).__name__ in ("DNFOp", "ChannelGatedOp")]
    # the cost model (reporting only: no cost.target) prices the registered candidates too
    assert set(ops) <= set(model.cost.table.ops) and float(model.cost.expected().detach()) > 0
    x, y = batch(space)
    model.train()
    loss = F.cross_entropy(model(x), y)
    penalty = model.penalty()
    assert penalty is not None and torch.isfinite(penalty)  # the L0 terms (and the DNF sparsity)
    (loss + penalty).backward()
    for role in ROLES:
        for p in model.arch_parameters(role):
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{role} parameter {tuple(p.shape)}"
    genotype = model.genotype()
    assert space.genotype_from_dict(yaml.safe_load(yaml.safe_dump(space.genotype_to_dict(genotype)))) == genotype
    assert isinstance(model.artifacts(genotype), dict)
    net = space.build_network(genotype, num_classes=CLASSES, in_channels=3,
                              op_args=run_op_args(cfg, ops), **space.tiny_network)
    net.eval()
    with torch.no_grad():
        out = net(x)
    assert out.shape == (BATCH, CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
def test_builtin_network_refuses_model_args(space_name):
    from nas.retrainer.config import ModelConfig
    with pytest.raises(ConfigError, match="model.args passes keywords to a user space's network"):
        get_space(space_name).network_kwargs(ModelConfig(args={"width": 2}))
