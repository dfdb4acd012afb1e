"""The cost model (nas/cost): op MACs and parameters against hand counts, the cost table against
counting whole networks, and NAS-Bench-201's reported FLOPs and parameters."""
import random

import pytest
import torch
from torch import nn

from nas.cost import build_cost_table
from nas.utils import count_macs, count_params
from nas.spaces import get_space
from nas.spaces.darts import GENOTYPES, Genotype
from nas.spaces.nb201 import NB201Genotype, OPS


def test_count_macs_bias_convention_by_hand():
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True)
    # 5 outputs x 4x4 positions, 3*3*3 MACs each, plus one bias add each with bias=True
    assert count_macs(conv, (3, 4, 4)) == 5 * 16 * 27
    assert count_macs(conv, (3, 4, 4), bias=True) == 5 * 16 * 28
    lin = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    assert count_macs(lin, (6, 1, 1), bias=True) == 2 * 6 + 2
    assert count_macs(nn.AvgPool2d(3, 1, 1), (4, 5, 5)) == 0  # parameter-free: runs, counts nothing


def test_a_module_with_forward_macs_counts_itself_and_its_children_are_not_hooked():
    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return self.conv(x)

        def forward_macs(self, out):
            return 7 * out[0, 0].numel()

    net = nn.Sequential(Counted(), nn.Conv2d(3, 1, 1, bias=False))
    assert count_macs(net, (2, 4, 4)) == 7 * 16 + 3 * 16   # its own 7 per pixel, not its conv's 2


def test_dnf_op_macs_are_its_conjunctions_matmul_by_hand():
    from nas.blocks.dnf import DNFOp
    from nas.estimators import build_estimator

    op = DNFOp(4, 3, 2, False, build_estimator("ste"), rules=2)
    # stride 2 on 6x6: 3x3 output pixels, each a [2*C_in] @ [2*C_in, C_out*rules] product
    assert count_macs(op, (4, 6, 6), bias=True) == 9 * (2 * 4) * (3 * 2)
    space = get_space("nb201")
    ops = ["none", "nor_conv_1x1", "dnf_1x1"]
    t = build_cost_table(space.cost_model(), "macs", num_classes=3, in_channels=3, resolution=8,
                         network=space.cost_model().trained_network(4, 1), ops=ops,
                         op_args={"dnf_1x1": {"rules": 2}})
    # per edge, summed over the stages (8x8 C=4, 4x4 C=8, 2x2 C=16): 2*rules = 4 times a 1x1 conv
    conv1 = sum(c * c * hw for c, hw in ((4, 64), (8, 16), (16, 4))) / 1e6
    col = {op: t.column(op) for op in ops}
    assert torch.allclose(t.edges["arch.cell"][:, col["nor_conv_1x1"]], torch.full((6,), conv1, dtype=torch.float64))
    assert torch.allclose(t.edges["arch.cell"][:, col["dnf_1x1"]], torch.full((6,), 4 * conv1, dtype=torch.float64))


def nb201_table(metric, C=4, N=1, resolution=8, classes=3):
    space = get_space("nb201")
    return space, build_cost_table(space.cost_model(), metric, num_classes=classes, in_channels=3, resolution=resolution,
                                   network=space.cost_model().trained_network(C, N))


def test_nb201_op_costs_by_hand():
    space, t = nb201_table("macs", C=4, N=2, resolution=8)
    # stages at 8x8 (C=4), 4x4 (C=8), 2x2 (C=16), N=2 cells each, summed per edge
    conv3 = sum(2 * 9 * c * c * hw for c, hw in ((4, 64), (8, 16), (16, 4))) / 1e6
    conv1 = conv3 / 9
    col = {op: t.column(op) for op in OPS}
    assert torch.allclose(t.edges["arch.cell"][:, col["nor_conv_3x3"]], torch.full((6,), conv3, dtype=torch.float64))
    assert torch.allclose(t.edges["arch.cell"][:, col["nor_conv_1x1"]], torch.full((6,), conv1, dtype=torch.float64))
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert float(t.edges["arch.cell"][:, col[op]].abs().sum()) == 0
    _, p = nb201_table("params", C=4, N=2, resolution=8)
    # conv weights plus the BN's affine weight and bias, per cell
    assert float(p.edges["arch.cell"][0, col["nor_conv_3x3"]]) == pytest.approx(
        sum(2 * (9 * c * c + 2 * c) for c in (4, 8, 16)) / 1e6)


@pytest.mark.parametrize("metric", ["macs", "params"])
def test_nb201_table_equals_counting_the_network(metric):
    space, t = nb201_table(metric, C=4, N=2, resolution=8)
    rng = random.Random(0)
    for _ in range(6):
        g = NB201Genotype(tuple(rng.choice(list(OPS)) for _ in range(6)))
        net = space.build_network(g, num_classes=3, C=4, N=2)
        counted = (count_macs(net, (3, 8, 8), bias=True) if metric == "macs" else count_params(net, exclude=())) / 1e6
        assert t.exact(space.selected_edges(g)) == pytest.approx(counted, rel=1e-12)


def test_nb201_benchmark_network_reproduces_the_reported_flops_and_params():
    """NB201 reports 7.78305 to 220.11969 MFLOPs and 0.073306 to 1.531546 MB on CIFAR-10 (the
    paper prints 7.78 and 220.11): conv and linear MACs plus the classifier's bias adds."""
    space = get_space("nb201")
    none = NB201Genotype(("none",) * 6)
    convs = NB201Genotype(("nor_conv_3x3",) * 6)
    skips = NB201Genotype(("skip_connect", "avg_pool_3x3") * 3)
    for metric, lo, hi in (("macs", 7.78305, 220.11969), ("params", 0.073306, 1.531546)):
        t = build_cost_table(space.cost_model(), metric, num_classes=10, in_channels=3, resolution=32,
                             network=space.cost_model().trained_network())
        assert t.exact(space.selected_edges(none)) == pytest.approx(lo, abs=5e-7)
        assert t.exact(space.selected_edges(skips)) == pytest.approx(lo, abs=5e-7)
        assert t.exact(space.selected_edges(convs)) == pytest.approx(hi, abs=5e-7)
    # the hook counter on the whole benchmark network gives the same
    net = space.build_network(convs, num_classes=10)
    assert count_macs(net, (3, 32, 32), bias=True) == 220_119_690
    assert count_params(net, exclude=()) == 1_531_546


def test_darts_table_equals_counting_the_evaluation_network():
    space = get_space("darts")
    net_kw = space.cost_model().trained_network(C=4, layers=5)
    cell = {"steps": 3, "multiplier": 2}
    ref = space.cost_model().reference(**cell)
    assert len(ref.normal) == 6 and ref.normal_concat == (3, 4)
    for metric in ("macs", "params"):
        t = build_cost_table(space.cost_model(), metric, num_classes=3, in_channels=3, resolution=8, network=net_kw, cell=cell)
        assert t.edges["arch.normal"].shape == (9, 8)
        # share: node n keeps 2 of its n+2 inputs
        assert t.share["arch.reduce"].tolist() == [1, 1, 2 / 3, 2 / 3, 2 / 3, .5, .5, .5, .5]
        ops = [o for o in space.ops if o != "none"]
        for seed in range(4):
            rng = random.Random(seed)
            pairs = tuple((rng.choice(ops), rng.randrange(n + 2)) for n in range(3) for _ in range(2))
            pairs_r = tuple((rng.choice(ops), rng.randrange(n + 2)) for n in range(3) for _ in range(2))
            g = Genotype(pairs, (3, 4), pairs_r, (3, 4))
            net = space.build_network(g, num_classes=3, **net_kw)
            counted = count_macs(net, (3, 8, 8), bias=True) if metric == "macs" else count_params(net, exclude=())
            assert t.exact(space.selected_edges(g)) == pytest.approx(counted / 1e6, rel=1e-12)


def test_darts_v2_evaluation_network():
    space = get_space("darts")
    t = build_cost_table(space.cost_model(), "params", num_classes=10, in_channels=3, resolution=32,
                         network=space.cost_model().trained_network(), cell={"steps": 4, "multiplier": 4})
    # the DARTS paper's 3.3M parameters (without the auxiliary head)
    assert t.exact(space.selected_edges(GENOTYPES["DARTS_V2"])) == pytest.approx(3.349342, abs=1e-6)


def test_trained_network_keys_and_spaces_without_a_cost_model():
    from nas.cost import require_cost_model
    from nas.errors import ConfigError
    assert get_space("nb201").cost_model().trained_network() == {"C": 16, "N": 5}
    assert get_space("darts").cost_model().trained_network(layers=8) == {"C": 36, "layers": 8, "auxiliary": False}
    with pytest.raises(ConfigError, match="cost.layers applies to the darts space"):
        get_space("nb201").cost_model().trained_network(layers=8)
    with pytest.raises(ConfigError, match="cost.N applies to the nb201 space"):
        get_space("darts").cost_model().trained_network(N=3)
    assert get_space("dnf").cost_model() is None
    with pytest.raises(ConfigError, match="space 'dnf' has no cost model"):
        require_cost_model(get_space("dnf"))


def test_a_search_of_a_space_without_a_cost_model_refuses_the_cost_section():
    from nas.config import Config, CostConfig, from_dict
    from nas.errors import ConfigError
    from nas.estimators import build_estimator
    from nas.searcher.run import make_supernet
    cfg = from_dict(Config, {"space": {"name": "dnf"}, "data": {"dataset": "synthetic_dnf"}})
    assert get_space("dnf").cost_model() is None and get_space("nb201").cost_model() is not None
    _, model = make_supernet(cfg, build_estimator("softmax"), 2, 4)  # no cost section: no budget
    assert model.budget() is None
    cfg.cost = CostConfig(target=50.0)
    with pytest.raises(ConfigError, match="dnf space has no cost model"):
        make_supernet(cfg, build_estimator("softmax"), 2, 4)
