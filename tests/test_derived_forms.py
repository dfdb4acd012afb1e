"""Derive keeps what the discrete blocks learned: L0-gated convs write the share of channels they
kept into the genotype and the discrete network is built that narrow (its MACs and parameters
those of the pruned network, counted by hand); a DNF op whose rules are all ``IF FALSE`` derives
to ``none``; with the rules' default estimator (STE + adaptive noise) the forward of a DNF op
during the search is the derived rule set."""
import pytest
import torch
import yaml

from nas.blocks.dnf import DNFOp
from nas.blocks.l0 import ChannelGatedOp, Pruned
from nas.config import load_config
from nas.errors import CheckpointError
from nas.estimators import build_estimator
from nas.searcher.run import make_estimator, make_supernet
from nas.spaces import get_space
from nas.spaces.nb201 import EDGE_NAMES, NB201Genotype
from nas.spaces.nb201.supernet import SearchCell
from nas.utils.flops import count_macs

from test_dnf import set_binary

OPS = ["none", "skip_connect", "nor_conv_3x3", "dnf_1x1", "l0_nor_conv_3x3"]
L0_EDGE = 3   # 3<-0


def supernet():
    torch.manual_seed(0)
    model = get_space("nb201").build_supernet(build_estimator("softmax"), num_classes=10, C=4, N=1, ops=OPS,
                                              op_args={"dnf_1x1": {"rules": 2}},
                                              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():   # every edge nor_conv_3x3, edge 3<-0 the L0-gated conv, edge 1<-0 the DNF op
        a = model.arch["cell"].alpha
        a.zero_()
        a[:, OPS.index("nor_conv_3x3")] = 1
        a[L0_EDGE, OPS.index("l0_nor_conv_3x3")] = 2
        a[0, OPS.index("dnf_1x1")] = 2
    cells = [c for c in model.cells if isinstance(c, SearchCell)]
    return model, cells


def close_channels(cells, keep):
    """Close all but the first ``keep(C)`` gates of the edge's L0 conv in every cell."""
    for cell in cells:
        op = cell.edges[L0_EDGE].ops[OPS.index("l0_nor_conv_3x3")]
        with torch.no_grad():
            la = op.gate.log_alpha
            la.fill_(3.0)
            la[keep(cell.C):] = -4.0
        assert isinstance(op, ChannelGatedOp) and len(op.open_channels()) == keep(cell.C)


def test_derived_widths_are_written_into_the_genotype_and_read_back():
    model, cells = supernet()
    close_channels(cells, lambda C: C // 4)
    g = model.genotype()
    assert g.ops[L0_EDGE] == "l0_nor_conv_3x3" and g.width(L0_EDGE) == 0.25
    assert [g.width(e) for e in range(6) if e != L0_EDGE] == [None] * 5
    data = get_space("nb201").genotype_to_dict(g)
    assert data["widths"] == {"3<-0": 0.25} and data["arch"] == str(g)
    back = get_space("nb201").genotype_from_dict(yaml.safe_load(yaml.safe_dump(data)))
    assert back == g
    with pytest.raises(CheckpointError, match="widths.3<-0 must be a share of the channels in \\(0, 1\\]"):
        get_space("nb201").genotype_from_dict({**data, "widths": {"3<-0": 1.5}})
    with pytest.raises(CheckpointError, match="widths maps edges"):
        get_space("nb201").genotype_from_dict({**data, "widths": {"9<-0": 0.5}})


def test_an_op_that_kept_nothing_derives_to_none():
    model, cells = supernet()
    close_channels(cells, lambda C: 0)
    for cell in cells:    # every DNF rule IF FALSE: no selected conjunction
        op = cell.edges[0].ops[OPS.index("dnf_1x1")]
        set_binary(op.block.S, torch.zeros(op.block.S.alpha.numel()))
        assert set(op.rules()) == {f"IF FALSE THEN out {t}" for t in range(cell.C)} and op.kept_fraction() == 0
    g = model.genotype()
    assert g.ops[L0_EDGE] == "none" and g.ops[0] == "none" and g.widths == ()
    # one cell whose DNF op keeps one rule: the op stays (in that cell it is not a constant)
    op = cells[1].edges[0].ops[OPS.index("dnf_1x1")]
    S = torch.zeros(op.block.S.alpha.numel())
    S[0] = 1
    set_binary(op.block.S, S)
    assert model.genotype().ops[0] == "dnf_1x1"


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_the_network_of_a_width_is_the_pruned_network_by_count(keep):
    """MACs and parameters of the network with edge 3<-0 at width keep/4 are those of the same
    network with a full nor_conv_3x3 there minus the pruned output channels' conv and BN."""
    space = get_space("nb201")
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|{}~0|nor_conv_3x3~1|skip_connect~2|"
    full = space.build_network(NB201Genotype.from_string(arch.format("nor_conv_3x3")), num_classes=10, C=4, N=1)
    w = keep / 4
    g = NB201Genotype.from_dict({"arch": arch.format("l0_nor_conv_3x3"), "widths": {"3<-0": w}})
    pruned = space.build_network(g, num_classes=10, C=4, N=1)
    edges = [m for m in pruned.modules() if isinstance(m, Pruned)]
    assert [(p.kept, p.C_out) for p in edges] == [(keep * C // 4, C) for C in (4, 8, 16)]
    assert not any(isinstance(m, ChannelGatedOp) for m in pruned.modules())   # no gates, no mask
    side = {4: 32, 8: 16, 16: 8}      # the cells' resolution for a 32x32 input (two stride-2 ResBlocks)
    cut = {C: C - keep * C // 4 for C in side}
    macs = sum(side[C] ** 2 * C * cut[C] * 9 for C in side)          # conv 3x3, C -> cut channels
    params = sum(C * cut[C] * 9 + 2 * cut[C] for C in side)          # its weights and BN affine
    n = lambda m: sum(p.numel() for p in m.parameters())              # noqa: E731
    assert count_macs(full, (3, 32, 32)) - count_macs(pruned, (3, 32, 32)) == macs
    assert n(full) - n(pruned) == params
    pruned.eval()
    x = torch.randn(2, 3, 32, 32)
    y = edges[0](pruned.stem(x))
    assert y.shape == (2, 4, 32, 32) and y[:, keep:].abs().sum() == 0


def test_the_rules_default_estimator_runs_the_derived_rules_during_the_search():
    """With STE + adaptive noise (the rules' default) and σ = 0 the training forward of a DNF
    op's block is its eval forward: the rules printed are the ones that ran."""
    cfg = load_config(None, ["space.C=4", "space.N=1", f"space.ops=[{', '.join(OPS)}]",
                             "space.op_args={dnf_1x1: {rules: 3}}", "device=cpu"])
    est = make_estimator(cfg)
    _, model = make_supernet(cfg, est, 10, 3)
    op = next(m for m in model.modules() if isinstance(m, DNFOp))
    assert type(op.block.W.estimator).__name__ == "AdaptiveNoise"
    with torch.no_grad():
        op.block.W.sigma.zero_()
        op.block.S.sigma.zero_()
        op.block.W.alpha.normal_()
        op.block.S.alpha.normal_()
    rows = torch.randn(50, op.block.K)
    log_b = torch.stack((torch.nn.functional.logsigmoid(rows), torch.nn.functional.logsigmoid(-rows)), -1).flatten(-2)
    train = op.block.train()(log_b=log_b)[0]
    evals = op.block.eval()(log_b=log_b)[0]
    assert torch.equal(train, evals)


def test_a_retrain_of_a_genotype_with_widths_trains_the_pruned_network_and_keeps_its_widths(tmp_path):
    import nas.retrainer.run as R
    from nas.retrainer import RetrainConfig, run_retrain
    record = {"space": "nb201", "arch": "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|l0_nor_conv_3x3~0|none~1|skip_connect~2|",
              "widths": {"3<-0": 0.5}, "op_args": {"l0_nor_conv_3x3": {"l0_lambda": 0.01}}}
    (tmp_path / "genotype.yaml").write_text(yaml.safe_dump(record))
    cfg = load_config("retrain_nb201_digits", ["model.C=4", "model.N=1", "data.subset=96", "data.test_subset=64",
                                               "data.resize=8", "trainer.epochs=1", "trainer.max_steps_per_epoch=2",
                                               "device=cpu", f"model.genotype={tmp_path / 'genotype.yaml'}"],
                      cls=RetrainConfig)
    built = []
    make = R.make_network
    R.make_network = lambda *a, **k: built.append(make(*a, **k)) or built[-1]
    try:
        run_retrain(cfg, tmp_path / "rt", quiet=True)
    finally:
        R.make_network = make
    pruned = [m for m in built[0].modules() if isinstance(m, Pruned)]
    assert [(p.kept, p.C_out) for p in pruned] == [(2, 4), (4, 8), (8, 16)]
    assert yaml.safe_load((tmp_path / "rt" / "genotype.yaml").read_text())["widths"] == {"3<-0": 0.5}
