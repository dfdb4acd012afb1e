"""DARTS-'s auxiliary skip (Chu et al., ICLR 2021) on the NB201 supernet: the cell's value by
hand, the linear decay of β per step in the search loop, and one-line errors."""
import pytest
import torch

from nas.config import Config, apply_overrides, from_dict, to_dict
from nas.errors import NasError
from nas.estimators import build_estimator
from nas.estimators.base import Sample
from nas.searcher.loop import Searcher
from nas.searcher.optim import build_optimizers
from nas.spaces.darts.supernet import DartsSupernet
from nas.spaces.nb201.supernet import NB201Supernet, SearchCell
from nas.spaces.base import Supernet


def test_cell_adds_beta_times_the_input_on_every_edge_by_hand():
    # with `none` as the only candidate each edge is just β·x_i, so
    # n1 = βx, n2 = βx + βn1, n3 = βx + βn1 + βn2 = (β + 2β² + β³)·x
    cell = SearchCell(4, ["none"])
    x = torch.randn(2, 4, 5, 5)
    sample = Sample(torch.ones(6, 1), None)
    b = 0.3
    assert torch.allclose(cell(x, sample, aux_skip=b), (b + 2 * b**2 + b**3) * x)
    assert torch.equal(cell(x, sample), torch.zeros_like(x))


def test_supernet_with_beta_equals_the_plain_cell_plus_the_auxiliary_paths():
    torch.manual_seed(0)
    est = build_estimator("softmax")
    net = NB201Supernet(est, num_classes=3, C=4, N=1, ops=["skip_connect", "nor_conv_1x1"],
                        generator=torch.Generator().manual_seed(0)).eval()
    cell = net.cells[0]
    x = torch.randn(2, 4, 6, 6)
    sample = net.arch["cell"]()
    plain = cell(x, sample)
    # the cell recomputed by hand: mixed candidates plus 0.5·x_i on every edge
    with torch.no_grad():
        w = sample.weights
        nodes = [x]
        e = 0
        for j in range(1, 4):
            acc = 0
            for i in range(j):
                acc = acc + w[e, 0] * nodes[i] + w[e, 1] * cell.edges[e].ops[1](nodes[i]) + 0.5 * nodes[i]
                e += 1
            nodes.append(acc)
    assert torch.allclose(cell(x, sample, aux_skip=0.5), nodes[-1], atol=1e-6)
    assert not torch.allclose(plain, nodes[-1])
    # the supernet forwards its own β into its search cells
    inp = torch.randn(2, 3, 8, 8)
    a = net(inp)
    net.aux_skip = 0.5
    assert not torch.allclose(net(inp), a)
    net.aux_skip = 0.0
    assert torch.equal(net(inp), a)


class _Recorder(Supernet):
    """A model with an ``aux_skip`` attribute that records the value each forward sees."""

    def __init__(self, estimator):
        super().__init__()
        from nas.supernet.choice import Choice
        self.choice = Choice(estimator, 1, ["a", "b"], generator=torch.Generator().manual_seed(0))
        self.lin = torch.nn.Linear(4, 4)
        self.aux_skip = 0.0
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(self.aux_skip)
        w = self.choice().weights[0]
        return w[0] * self.lin(x)[:, :2] + w[1] * self.lin(x)[:, 2:]


def test_beta_decays_linearly_per_step_and_is_zero_after_the_search():
    est = build_estimator("softmax")
    model = _Recorder(est)
    opts = build_optimizers(model, est, epochs=2)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(4)]
    s = Searcher(model, est, opts, batches, batches, epochs=2, aux_skip=1.0)
    for epoch in range(2):
        s.train_epoch(epoch)
    # alternating: a weight step and an arch step per training step, both at the step's β
    want = [1.0 - (e * 4 + k) / 8 for e in range(2) for k in range(4)]
    assert model.seen == pytest.approx([b for b in want for _ in range(2)])
    assert model.aux_skip == 0.0
    # β0 scales the schedule
    model2 = _Recorder(est)
    s2 = Searcher(model2, est, build_optimizers(model2, est, epochs=2), batches, batches, epochs=2, aux_skip=0.5)
    s2.train_epoch(0)
    assert model2.seen[::2] == pytest.approx([0.5 * b for b in want[:4]])
    assert model2.aux_skip == pytest.approx(0.25)  # the end of epoch 1 of 2
    # β_end: linear from β0 to β_end, and β_end after the search; β_end = β0 keeps β constant
    for b0, b_end in ((1.0, 0.5), (0.7, 0.7), (0.0, 0.4)):
        m = _Recorder(est)
        s3 = Searcher(m, est, build_optimizers(m, est, epochs=2), batches, batches, epochs=2,
                      aux_skip=b0, aux_skip_end=b_end)
        for epoch in range(2):
            s3.train_epoch(epoch)
        steps = [(e * 4 + k) / 8 for e in range(2) for k in range(4)]
        assert m.seen[::2] == pytest.approx([b0 + (b_end - b0) * t for t in steps])
        assert m.aux_skip == pytest.approx(b_end)


def test_aux_skip_bad_settings_are_one_line_errors():
    est = build_estimator("softmax")
    model = _Recorder(est)
    with pytest.raises(NasError, match="aux_skip_end must be >= 0"):
        Searcher(model, est, build_optimizers(model, est, epochs=1), [], [], epochs=1, aux_skip=-1.0)
    with pytest.raises(NasError, match="aux_skip_end must be >= 0"):
        Searcher(model, est, build_optimizers(model, est, epochs=1), [], [], epochs=1, aux_skip_end=-1.0)
    darts = DartsSupernet(est, num_classes=3, C=4, layers=2, steps=2, multiplier=2, stem_multiplier=1)
    with pytest.raises(NasError, match="has no auxiliary skip.*set optim.aux_skip=0"):
        Searcher(darts, est, build_optimizers(darts, est, epochs=1), [], [], epochs=1, aux_skip=1.0)
    cfg = from_dict(Config, apply_overrides(to_dict(Config()), ["optim.aux_skip=1"]))
    assert cfg.optim.aux_skip == 1.0


def _load_supernet(run):
    from nas.searcher.derive import load_supernet
    return load_supernet(run)


def test_aux_skip_search_resumes_bitwise_and_derive_restores_beta(tmp_path):
    from nas.config import load_config
    from nas.engine.checkpoint import load_checkpoint
    from nas.searcher.run import run_search
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(None, ["trainer.max_steps_per_epoch=2", "space.C=4", "space.N=1", "data.resize=8",
                                 "data.batch_size=16", "data.subset=120", "device=cpu", "trainer.epochs=4",
                                 "optim.aux_skip=1", "optim.aux_skip_end=0.5"])
        full = run_search(cfg, tmp_path / "full", quiet=True)
        run_search(cfg, tmp_path / "split", quiet=True, stop_after=2)
        _, _, half = _load_supernet(tmp_path / "split")
        assert half.aux_skip == pytest.approx(0.75)  # after 2 of 4 epochs
        resumed = run_search(cfg, tmp_path / "split", quiet=True, resume=True)
    finally:
        torch.set_num_threads(n)
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "split")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert resumed.genotype_str == full.genotype_str
    _, _, model = _load_supernet(tmp_path / "full")
    assert model.aux_skip == pytest.approx(0.5)


def test_a_cell_with_none_derived_beside_the_auxiliary_skip_is_warned_about():
    from nas.config import load_config
    from nas.searcher.run import aux_none_warning
    from nas.spaces.nb201 import NB201Genotype
    with_none = NB201Genotype(("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "nor_conv_1x1"))
    without = NB201Genotype(("nor_conv_3x3",) * 6)
    aux = load_config(None, ["optim.aux_skip=1", "optim.aux_skip_end=1", "estimator.name=bop"])
    msg = aux_none_warning(aux, with_none)
    assert msg and "identity paths" in msg and "'bop' has no logits" in msg and "\n" not in msg
    assert aux_none_warning(aux, without) is None
    assert aux_none_warning(load_config(None, []), with_none) is None
    # edges closed by L0 gates are real zeros
    gated = load_config(None, ["optim.aux_skip=1", "space.gates=edge"])
    assert aux_none_warning(gated, with_none) is None


def test_a_supernet_built_for_the_auxiliary_skip_never_derives_none():
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    alpha = torch.tensor([[3.0, 1.0, 0.0, 2.0, 0.0]] * 3 + [[3.0, 0.0, 1.0, 0.0, 2.0]] * 3)

    def derive(estimator, aux):
        net = NB201Supernet(build_estimator(estimator), num_classes=3, C=4, N=1, with_aux_skip=aux)
        with torch.no_grad():
            for p in net.arch["cell"].params().values():
                if p.shape == alpha.shape and p.dtype.is_floating_point:
                    p.copy_(alpha)
        return net.genotype().ops

    # none leads every edge; beside the auxiliary skip derive takes the next op
    assert derive("softmax", False) == ("none",) * 6
    assert derive("softmax", True) == ("nor_conv_3x3",) * 3 + ("avg_pool_3x3",) * 3
    with pytest.raises(NasError, match="derive never picks 'none'"):
        NB201Supernet(build_estimator("softmax"), num_classes=3, C=4, N=1, ops=["none"], with_aux_skip=True)
    # bop has no logits to rank the others: its discrete state stands (run.py warns instead)
    NB201Supernet(build_estimator("bop"), num_classes=3, C=4, N=1, with_aux_skip=True)


def test_darts_cell_adds_beta_times_the_space_skip_by_hand():
    from nas.spaces.darts.supernet import SearchCell as DartsCell
    from nas.ops import FactorizedReduce
    torch.manual_seed(0)
    s0, s1 = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    sample = Sample(torch.ones(5, 1), None)
    b = 0.4
    # normal cell, `none` only: n2 = β(h0+h1), n3 = β(h0+h1+n2) = β(1+β)(h0+h1)
    cell = DartsCell(2, 2, 6, 6, 4, reduction=False, reduction_prev=False, op_names=["none"],
                     with_aux_skip=True).eval()
    h = cell.preprocess0(s0) + cell.preprocess1(s1)
    out = cell(s0, s1, sample, aux_skip=b)
    assert torch.allclose(out, torch.cat([b * h, b * (1 + b) * h], 1), atol=1e-6)
    assert all(isinstance(m, torch.nn.Identity) for m in cell.aux)
    # reduction cell: the edges from the two inputs skip through their own FactorizedReduce
    red = DartsCell(2, 2, 6, 6, 4, reduction=True, reduction_prev=False, op_names=["none"],
                    with_aux_skip=True).eval()
    assert [type(m) for m in red.aux] == [FactorizedReduce] * 2 + [FactorizedReduce] * 2 + [torch.nn.Identity]
    h0, h1 = red.preprocess0(s0), red.preprocess1(s1)
    n2 = b * (red.aux[0](h0) + red.aux[1](h1))
    n3 = b * (red.aux[2](h0) + red.aux[3](h1) + n2)
    got = red(s0, s1, sample, aux_skip=b)
    assert got.shape == (2, 8, 4, 4) and torch.allclose(got, torch.cat([n2, n3], 1), atol=1e-6)
    assert torch.equal(red(s0, s1, sample), torch.zeros_like(got))
    # a plain supernet holds no auxiliary weights
    assert DartsCell(2, 2, 6, 6, 4, True, False, ["none"]).aux is None


def test_darts_search_with_the_auxiliary_skip_runs_and_derive_restores_beta(tmp_path):
    from nas.config import load_config
    from nas.searcher.run import run_search
    cfg = load_config("darts_tiny", ["space.layers=3", "space.C=4", "trainer.max_steps_per_epoch=2",
                             "data.resize=8", "data.batch_size=16", "data.subset=120", "device=cpu",
                             "trainer.epochs=2", "optim.aux_skip=1", "optim.aux_skip_end=0.5",
                             "derive.max_skip=2"])
    result = run_search(cfg, tmp_path / "run", quiet=True)
    assert sum(op == "skip_connect" for op, _ in result.genotype.normal) <= 2
    _, _, model = _load_supernet(tmp_path / "run")
    assert model.aux_skip == pytest.approx(0.5)
    assert any(k.startswith("cells.") and ".aux." in k for k in model.state_dict())
