"""DARTS space: op tables, supernet with every estimator, derive rule, genotype round trip,
evaluation network (parameter count of the published DARTS_V2 cell, auxiliary head, drop-path)."""
import pytest
import torch
import yaml
from torch import nn

from nas.errors import CheckpointError, ConfigError
from nas.estimators import ESTIMATORS, build_estimator, noise_capable
from nas.estimators.base import CATEGORICAL
from nas.ops import FactorizedReduce, Identity, Pool
from nas.supernet.choice import arch_parameters, choices
from nas.utils import count_macs, count_params
from nas.spaces import get_space
from nas.ops import build_op
from nas.spaces.darts import GENOTYPES, PRIMITIVES, Genotype, derive_cell, edge_names
from nas.spaces.darts.ops import drop_path

SPACE = get_space("darts")
CATEGORICAL_ESTIMATORS = [n for n in ESTIMATORS.names() if CATEGORICAL in getattr(ESTIMATORS.get(n), "kinds", (CATEGORICAL,))]


def tiny_supernet(estimator, **kw):
    args = dict(num_classes=3, C=4, layers=3, in_channels=3, generator=torch.Generator().manual_seed(0))
    args.update(kw)
    return SPACE.build_supernet(estimator, **args)


# ------------------------------------------------------------------ ops

def test_op_table_shapes_and_pool_bn_in_supernet_only():
    assert PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                          "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    x = torch.randn(2, 4, 8, 8)
    for pool_bn in (False, True):  # the discrete network's ops, and the supernet's
        for name in PRIMITIVES:
            for stride, size in ((1, 8), (2, 4)):
                assert build_op(name, 4, 4, stride, False, pool_bn=pool_bn)(x).shape == (2, 4, size, size), (name, stride)
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        assert isinstance(build_op(name, 4, 4, 1, False, pool_bn=True).bn, nn.BatchNorm2d)
        assert build_op(name, 4, 4, 1, True).bn is None
    supernet = tiny_supernet(build_estimator("softmax"))
    assert isinstance(supernet.cells[0].edges[0].ops[PRIMITIVES.index("max_pool_3x3")].bn, nn.BatchNorm2d)
    assert isinstance(build_op("skip_connect", 4, 4, 1, True), Identity)
    assert isinstance(build_op("skip_connect", 4, 4, 2, True), FactorizedReduce)
    # sep_conv_3x3 = two (ReLU, depthwise 3x3, 1x1, BN) blocks: 2·(9C + C²) weights (+ BN affine)
    C = 4
    n = sum(p.numel() for p in build_op("sep_conv_3x3", C, C, 1, False).parameters())
    assert n == 2 * (9 * C + C * C)
    n = sum(p.numel() for p in build_op("dil_conv_5x5", C, C, 1, False).parameters())
    assert n == 25 * C + C * C


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.2)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.8).all(1))
    assert abs(float(y.mean()) - 1.0) < 0.05
    assert drop_path(x, 0.0) is x


# ------------------------------------------------------------------ supernet

def test_supernet_structure():
    net = tiny_supernet(build_estimator("softmax"), layers=8, C=16)
    assert [c.reduction for c in net.cells] == [False, False, True, False, False, True, False, False]
    assert set(choices(net)) == {"arch.normal", "arch.reduce"}
    for ch in choices(net).values():
        assert ch.alpha.shape == (14, 8)
        assert ch.labels == edge_names(4) and ch.labels[:5] == ["2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    # the cell after a reduction preprocesses its first input with FactorizedReduce
    assert isinstance(net.cells[3].preprocess0, FactorizedReduce)
    assert not isinstance(net.cells[2].preprocess0, FactorizedReduce)
    # edges from the inputs stride in a reduction cell, the others do not
    red = net.cells[2]
    assert red.edges[0].ops[PRIMITIVES.index("max_pool_3x3")].pool.stride == 2
    assert red.edges[4].ops[PRIMITIVES.index("max_pool_3x3")].pool.stride == 1
    assert isinstance(red.edges[0].ops[1], Pool) and red.edges[0].ops[1].bn is not None
    assert sum(p.numel() for p in arch_parameters(net)) == 2 * 14 * 8


@pytest.mark.parametrize("name", CATEGORICAL_ESTIMATORS)
def test_supernet_forward_backward_every_estimator(name):
    torch.manual_seed(0)
    est = build_estimator(name)
    net = tiny_supernet(est)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,))
    out = net(x)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, y).backward()
    for cname, ch in choices(net).items():
        grads = [p.grad for p in ch.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), (name, cname)
        assert any(float(g.abs().sum()) > 0 for g in grads), (name, cname)
    weights = [p for n, p in net.named_parameters() if not n.startswith("arch.")]
    assert all(torch.isfinite(p.grad).all() for p in weights if p.grad is not None)
    g = net.genotype()
    assert isinstance(g, Genotype) and len(g.normal) == len(g.reduce) == 8
    net.eval()
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()


def test_same_seed_same_alpha():
    a, b = (tiny_supernet(build_estimator("softmax")) for _ in range(2))
    c = tiny_supernet(build_estimator("softmax"), generator=torch.Generator().manual_seed(1))
    for name in ("normal", "reduce"):
        assert torch.equal(a.arch[name].alpha, b.arch[name].alpha)
        assert not torch.equal(a.arch[name].alpha, c.arch[name].alpha)
    assert not torch.equal(a.arch["normal"].alpha, a.arch["reduce"].alpha)


@pytest.mark.parametrize("name", noise_capable())
def test_supernet_with_adaptive_noise(name):
    torch.manual_seed(0)
    net = tiny_supernet(build_estimator(name, noise="adaptive"))
    nn.functional.cross_entropy(net(torch.randn(2, 3, 8, 8)), torch.tensor([0, 1])).backward()
    sigmas = [p for ch in choices(net).values() for p in ch.parameters_by_role("noise")]
    assert len(sigmas) == 2 and all(s.grad is not None and torch.isfinite(s.grad).all() for s in sigmas)


def test_supernet_config_errors():
    est = build_estimator("softmax")
    with pytest.raises(ConfigError, match="unknown op 'conv_7x7'"):
        tiny_supernet(est, ops=["none", "conv_7x7"])
    with pytest.raises(ConfigError, match="other than 'none'"):
        tiny_supernet(est, ops=["none"])
    with pytest.raises(ConfigError, match="even"):
        tiny_supernet(est, C=5)


# ------------------------------------------------------------------ derive

def test_derive_rule_on_hand_made_weights():
    ops = list(PRIMITIVES)
    K = len(ops)
    w = torch.zeros(14, K)
    # node 2 (edges 0: 2<-0, 1: 2<-1): both kept, best non-none op each; `none` (0.9) is ignored
    w[0, ops.index("none")] = 0.9
    w[0, ops.index("sep_conv_3x3")] = 0.05
    w[1, ops.index("dil_conv_5x5")] = 0.3
    # node 3 (edges 2..4 from 0, 1, 2): the two strongest are from 2 (0.7) and 0 (0.5)
    w[2, ops.index("max_pool_3x3")] = 0.5
    w[3, ops.index("skip_connect")] = 0.4
    w[3, ops.index("none")] = 0.99
    w[4, ops.index("sep_conv_5x5")] = 0.7
    # node 4 (edges 5..8 from 0..3): a tie between inputs 1 and 3 at 0.6 -> the lower input wins;
    # a tie between two ops on input 1 -> the op listed first wins
    w[6, ops.index("avg_pool_3x3")] = 0.6
    w[6, ops.index("dil_conv_3x3")] = 0.6
    w[8, ops.index("sep_conv_3x3")] = 0.6
    w[5, ops.index("skip_connect")] = 0.2
    # node 5 (edges 9..13): every weight equal -> inputs 0 and 1 with the first non-none op
    w[9:14] = 1.0 / K
    gene = derive_cell(w, ops, steps=4)
    # pairs are listed strongest first, as DARTS prints them
    assert gene == [("dil_conv_5x5", 1), ("sep_conv_3x3", 0),
                    ("sep_conv_5x5", 2), ("max_pool_3x3", 0),
                    ("avg_pool_3x3", 1), ("sep_conv_3x3", 3),
                    ("max_pool_3x3", 0), ("max_pool_3x3", 1)]
    assert derive_cell(w, ops, steps=4, top_k=1) == [("dil_conv_5x5", 1), ("sep_conv_5x5", 2),
                                                     ("avg_pool_3x3", 1), ("max_pool_3x3", 0)]


def test_supernet_genotype_uses_choice_probs():
    est = build_estimator("softmax")
    net = tiny_supernet(est)
    with torch.no_grad():
        for name in ("normal", "reduce"):
            net.arch[name].alpha.zero_()
        net.arch["normal"].alpha[:, PRIMITIVES.index("sep_conv_5x5")] = 2.0
        net.arch["normal"].alpha[:, PRIMITIVES.index("none")] = 5.0
        net.arch["reduce"].alpha[:, PRIMITIVES.index("max_pool_3x3")] = 1.0
        net.arch["reduce"].alpha[3, PRIMITIVES.index("max_pool_3x3")] = 3.0  # 3<-1 strongest
    g = net.genotype()
    assert g.normal == tuple([("sep_conv_5x5", 0), ("sep_conv_5x5", 1)] + [("sep_conv_5x5", 0), ("sep_conv_5x5", 1)] * 3)
    assert g.reduce[2:4] == (("max_pool_3x3", 1), ("max_pool_3x3", 0))
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)
    # Bop: the one-hot state is the probability
    bop = tiny_supernet(build_estimator("bop"))
    with torch.no_grad():
        s = bop.arch["normal"].state
        s.zero_()
        s[:, PRIMITIVES.index("dil_conv_3x3")] = 1
    assert {op for op, _ in bop.genotype().normal} == {"dil_conv_3x3"}


# ------------------------------------------------------------------ genotype

def test_genotype_repr_roundtrip_and_yaml(tmp_path):
    g = GENOTYPES["DARTS_V2"]
    assert repr(g) == (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
        "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
        "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
        "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
    for name, geno in GENOTYPES.items():
        assert Genotype.from_string(repr(geno)) == geno
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(SPACE.genotype_to_dict(geno), sort_keys=False))
        assert SPACE.genotype_from_dict(yaml.safe_load(path.read_text())) == geno
    assert Genotype.from_string("DARTS_V2") is g
    assert SPACE.genotype_from_dict({"arch": "DARTS_V1"}) == GENOTYPES["DARTS_V1"]
    # DARTS code prints concat as range(2, 6)
    pasted = repr(g).replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert Genotype.from_string(pasted) == g
    k1 = Genotype([("sep_conv_3x3", 0), ("skip_connect", 2)], [2, 3], [("max_pool_3x3", 1), ("sep_conv_5x5", 0)],
                  [2, 3], edges_per_node=1)
    assert Genotype.from_string(repr(k1)) == k1 and "edges_per_node=1" in repr(k1)
    assert Genotype.from_dict(yaml.safe_load(yaml.safe_dump(k1.to_dict()))) == k1


@pytest.mark.parametrize("data, msg", [
    ({"arch": "__import__('os').system('true')"}, "neither"),
    ({"arch": "NOPE"}, "neither"),
    ({"normal": [["sep_conv_3x3", 0]] * 8, "normal_concat": [2, 3, 4, 5], "reduce": [["conv_9x9", 0]] * 8,
      "reduce_concat": [2, 3, 4, 5]}, "unknown op 'conv_9x9'"),
    ({"normal": [["none", 0]] * 8, "normal_concat": [2, 3, 4, 5], "reduce": [["sep_conv_3x3", 0]] * 8,
      "reduce_concat": [2, 3, 4, 5]}, "keeps a 'none' edge"),
    ({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 2]] * 4, "normal_concat": [2, 3, 4, 5],
      "reduce": [["sep_conv_3x3", 0]] * 8, "reduce_concat": [2, 3, 4, 5]}, "node 2 reads from node 2"),
    ({"normal": [["sep_conv_3x3", 0]] * 8, "normal_concat": [2, 9], "reduce": [["sep_conv_3x3", 0]] * 8,
      "reduce_concat": [2, 3, 4, 5]}, "normal_concat lists node 9"),
    ({"normal": "sep_conv_3x3", "normal_concat": [2], "reduce": [], "reduce_concat": [2]}, "non-empty list"),
    ({"normal": [["sep_conv_3x3", 0]] * 8}, "missing normal_concat"),
    ([1, 2], "mapping"),
])
def test_bad_genotypes_are_one_line_errors(data, msg):
    with pytest.raises(CheckpointError, match=msg) as e:
        SPACE.genotype_from_dict(data)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ evaluation network

def test_darts_v2_parameter_count_and_macs():
    """Published: 3.3M params (DARTS Table 1; the code prints 3.349342 MB, auxiliary head
    excluded), about 528M multiply-accumulates."""
    net = SPACE.build_network(GENOTYPES["DARTS_V2"], num_classes=10, C=36, layers=20, auxiliary=True)
    params = count_params(net)
    assert abs(params / 1e6 - 3.3) < 0.1
    assert params == 3_349_342
    assert count_params(net, exclude=()) > params  # the auxiliary head exists but is not counted
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [6, 13]


def test_eval_network_forward_aux_and_macs():
    torch.manual_seed(0)
    g = GENOTYPES["PC_DARTS"]
    net = SPACE.build_network(g, num_classes=5, C=4, layers=5, auxiliary=True, in_channels=3)
    net.drop_path_prob = 0.3
    x = torch.randn(2, 3, 16, 16)
    logits, aux = net(x)
    assert logits.shape == aux.shape == (2, 5)
    (logits.sum() + aux.sum()).backward()
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)
    # MACs by hand for a 1-conv net: 3x3 conv 3->4 on 8x8 then Linear 4->2
    tiny = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert count_macs(tiny, (3, 8, 8)) == 8 * 8 * 4 * 3 * 9 + 4 * 2
    dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    assert count_macs(dw, (4, 8, 8)) == 8 * 8 * 4 * 1 * 9
