"""Budgets on a device of the shipped NB201 latency table (nas/benchmarks/device_latency.py,
nas/cost/latency_model.py, nas/cost/device.py): the fitted model, its expectation and gradient,
the table's reading, and the one-line errors."""
import itertools

import pytest
import torch

from nas.benchmarks.device_latency import DeviceTable, cell_index
from nas.cost import attach_budget
from nas.cost.device import device_cost_table, device_models
from nas.cost.latency_model import (all_cells, features, fit_models, live_edges, noise_ceiling, significant, spearman,
                                    twin_cells)
from nas.errors import ConfigError
from nas.estimators import build_estimator
from nas.spaces import get_space
from nas.spaces.nb201 import OPS, NB201Genotype, all_genotypes


@pytest.fixture(scope="module")
def table():
    return DeviceTable.load()


def test_table_order_matches_the_genotype_enumeration(table):
    cells = all_cells()
    assert torch.equal(cell_index(cells), torch.arange(len(cells)))
    g = list(all_genotypes())
    for i in (0, 1, 777, 15624):
        assert tuple(OPS[k] for k in cells[i].tolist()) == g[i].ops
    # a row of the shipped CSV read back by its cell string
    assert table.of("pixel3", ("none", "nor_conv_1x1", "nor_conv_1x1", "none", "none", "none")) == 0.00327686
    assert len(table.devices) == 27 and bool((table.ms > 0).all())


def test_the_fit_reproduces_an_exactly_additive_table():
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(6, 5, generator=gen, dtype=torch.float64)
    cells = all_cells()
    ms = 2.5 + w[torch.arange(6), cells].sum(1)
    (model,) = fit_models(ms[:, None])
    assert torch.allclose(model.predict(cells), ms, atol=1e-9)
    assert model.fit.rho == pytest.approx(1.0) and model.additive_fit.mean_error < 1e-9
    # and its additive part alone is the table's, up to a constant per edge moved into the bias
    q = torch.softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), -1)
    assert float(model.expected(q)) == pytest.approx(2.5 + float((q * w).sum()), abs=1e-9)


def test_live_edges_by_hand():
    # 1<-0 conv, 2<-0 none, 2<-1 none, 3<-0 skip, 3<-1 none, 3<-2 conv: node 2 is not reached
    on = torch.tensor([True, False, False, True, False, True])
    assert live_edges(on).tolist() == [False, False, False, True, False, False]
    assert live_edges(torch.tensor([True, False, True, False, False, True])).tolist() == \
        [True, False, True, False, False, True]


def test_expected_equals_the_enumeration_and_its_gradient_finite_differences(table):
    cells = all_cells()
    ms = table.ms[:, [table.column("raspi4"), table.column("titan_rtx_1")]]
    for model in fit_models(ms):
        logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        q = torch.softmax(logits, -1)
        prob = q[torch.arange(6), cells].prod(-1)
        want = float((prob * model.predict(cells)).sum())
        assert float(model.expected(q)) == pytest.approx(want, rel=1e-10)

        x = logits.clone().requires_grad_(True)
        model.expected(torch.softmax(x, -1)).backward()
        eps = 1e-6
        for e, k in [(0, 0), (2, 3), (5, 1), (3, 4)]:
            d = torch.zeros_like(logits)
            d[e, k] = eps
            fd = (model.expected(torch.softmax(logits + d, -1)) - model.expected(torch.softmax(logits - d, -1))) / (2 * eps)
            assert float(x.grad[e, k]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("device,rho", [("eyeriss", 0.999), ("titan_rtx_32", 0.99), ("raspi4", 0.97)])
def test_fit_on_the_shipped_table(table, device, rho):
    ms = table.latency(device)
    model = device_models()[device]
    pred = features(all_cells()) @ model.w
    assert spearman(significant(pred, 6), ms) == pytest.approx(model.fit.rho, abs=1e-6)
    assert model.fit.rho >= rho
    assert model.fit.rho >= model.additive_fit.rho - 1e-3  # never worse than the additive model


def test_twin_cells_are_one_network_and_the_noise_ceiling_by_hand(table):
    a, b = twin_cells()
    cells = all_cells()
    # 2<-1 none in both; 1<-0 <-> 2<-0 and 3<-1 <-> 3<-2 swapped; 3<-0 the same; each pair once
    assert bool((cells[a, 2] == 0).all())
    assert bool((cells[b, 2] == 0).all())
    assert torch.equal(cells[a][:, [1, 0, 2, 3, 5, 4]], cells[b])
    assert bool((a < b).all())
    assert len(a) == (5 ** 5 - 5 ** 3) // 2  # 3125 cells with 2<-1 none, less the 125 that are their own twin, halved
    # twins measured alike (a table symmetric in the swap): no noise, ceiling 1
    ms = 1.0 + all_cells()[:, [0, 1, 3, 4, 5]].double().sum(1)
    assert noise_ceiling(ms) == pytest.approx(1.0)
    noisy = ms.clone()
    noisy[a] += 0.5
    noisy[b] -= 0.5  # every twin difference is exactly 1: a bias, not noise (its variance is 0)
    assert noise_ceiling(noisy) == pytest.approx(1.0)
    sign = torch.where(torch.arange(len(a)) % 2 == 0, 1.0, -1.0).double()
    noisy = ms.clone()
    noisy[a] += 0.5 * sign  # differences +-1: sigma^2 = Var(d)/2 by hand
    d = (noisy[a] - noisy[b])
    var, noise = float(noisy.var()), float(d.var()) / 2
    assert noise_ceiling(noisy) == pytest.approx(((var - noise) / var) ** 0.5)
    assert noise_ceiling(table.latency("eyeriss")) == pytest.approx(1.0, abs=1e-6)  # simulated: no noise
    # the model never beats the measurements' own noise by more than chance (Pearson r)
    for device in ("pixel2", "titan_rtx_1"):
        assert device_models()[device].fit.r <= noise_ceiling(table.latency(device)) + 0.002


def test_spearman_with_ties_by_hand():
    x = torch.tensor([1.0, 2.0, 2.0, 3.0], dtype=torch.float64)
    y = torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64)
    # ranks x: 1, 2.5, 2.5, 4; y: 1, 3, 2, 4 -> Pearson of the ranks
    rx, ry = torch.tensor([1, 2.5, 2.5, 4]), torch.tensor([1, 3, 2, 4.0])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    assert spearman(x, y) == pytest.approx(float((rx * ry).sum() / (rx.norm() * ry.norm())))


def supernet(device="pixel3", target=10.68, weight=1.0, **kw):
    space = get_space("nb201")
    model = space.build_supernet(build_estimator("softmax"), num_classes=3, C=4, N=1,
                                 generator=torch.Generator().manual_seed(0), **kw)
    table = device_cost_table(space, device, target=target)
    budget = attach_budget(model, space.cost_model(), metric="latency", target=target, weight=weight, form="hinge", hard=None,
                           num_classes=3, in_channels=3, resolution=32, network={}, table=table)
    return model, budget


def test_the_search_reads_the_table_for_cells_and_the_model_for_the_distribution(table):
    model, budget = supernet()
    with torch.no_grad():
        model.arch["cell"].alpha.copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(2)))
    g = model.genotype()
    assert budget.exact(g) == table.of("pixel3", g.ops) <= 10.68
    q = torch.softmax(model.arch["cell"].alpha.detach().double(), -1)
    assert float(budget.expected().detach()) == pytest.approx(float(device_models()["pixel3"].expected(q)), rel=1e-5)
    # derive within: the most probable cell whose measured latency fits, by enumeration
    probs = torch.softmax(model.arch["cell"].alpha.detach().double(), -1)
    ms = table.latency("pixel3")
    cells = all_cells()
    logp = probs.log()[torch.arange(6), cells].sum(1).masked_fill(ms > 2.0, float("-inf"))
    within = supernet(target=2.0)[1]
    pick = within.within("arch.cell", probs, torch.ones(6, 5, dtype=torch.bool))
    assert pick == cells[int(logp.argmax())].tolist()


def test_bad_input_one_line(table):
    space = get_space("nb201")
    with pytest.raises(ConfigError, match="unknown device 'pixel9'; known: 1080ti_1, .*titanxp_32$"):
        device_cost_table(space, "pixel9")
    fastest = float(table.latency("fpga").min())
    with pytest.raises(ConfigError, match=f"below the fastest NB201 cell on fpga \\({fastest:.6g} ms\\)"):
        device_cost_table(space, "fpga", target=1.0)
    with pytest.raises(ConfigError, match="no latency for op 'dnf_1x1'"):
        device_cost_table(space, "fpga", ops=["nor_conv_3x3", "dnf_1x1"])
    with pytest.raises(ConfigError, match="covers the nb201 space only, not 'darts'.*nas-profile-latency"):
        device_cost_table(get_space("darts"), "fpga")
    with pytest.raises(ConfigError, match="C=16, N=5"):
        device_cost_table(space, "fpga", network={"C": 8, "N": 5})


@pytest.mark.parametrize("overrides,match", [
    (["cost.metric=latency", "cost.device=pixel3", "cost.target=10"], "covers the nb201 space only, not 'darts'"),
    (["cost.device=pixel3", "cost.target=10"], "cost.device=pixel3 budgets latency: set cost.metric=latency"),
])
def test_search_config_refuses_device_for_darts_in_one_line(overrides, match):
    from nas.config import load_config
    from nas.searcher.run import make_supernet
    cfg = load_config("configs/darts_tiny.yaml", overrides)
    with pytest.raises(ConfigError, match=match) as e:
        make_supernet(cfg, build_estimator("softmax"), num_classes=3, in_channels=3)
    assert "\n" not in str(e.value)


def test_lookup_on_a_device_gives_the_issue_rows_and_one_line_errors(capsys):
    from nas.commands.lookup import cli
    assert cli(["--device", "eyeriss", "--budget", "25%"]) == 0
    out = capsys.readouterr().out
    # the 25th percentile of Eyeriss: counted and thresholded by hand in docs/devices.md
    assert "budget 4.62866 ms on eyeriss: 4,605 of 15,625 cells within (29.5% of the space)" in out
    assert "front: CIFAR-10 93.91" in out and "top-1% threshold: CIFAR-10 93.34 (the 46th best within)" in out
    assert "same share on MACs: 31.3760 M MACs admits 4,096 cells; its best cell scores CIFAR-10 91.31" in out
    assert cli(["--device", "fpga", "--budget", "1"]) == 2
    assert "below the cheapest cell (1.13296)" in capsys.readouterr().err
    assert cli(["--device", "pixel9", "--budget", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'pixel9'; known: 1080ti_1" in err and err.count("\n") == 1


def test_target_alone_searches_as_without_a_budget_and_derives_within_it_on_the_device(tmp_path):
    import json

    from nas.cli import main
    tiny = ["space.C=4", "space.N=1", "data.subset=256", "data.resize=8", "data.batch_size=32",
            "trainer.epochs=2", "trainer.max_steps_per_epoch=3", "trainer.bn_batches=0"]
    budget = ["cost.metric=latency", "cost.device=pixel3", "cost.target=6.5"]
    assert main([*tiny, *budget, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert main([*tiny, "--out", str(tmp_path / "u"), "--quiet"]) == 0
    arch = [{k: v for k, v in torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["model"].items()
             if k.startswith("arch.")} for r in ("b", "u")]
    assert arch[0].keys() == arch[1].keys() and all(torch.equal(arch[0][k], arch[1][k]) for k in arch[0])
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    g = NB201Genotype.from_string(m["genotype"])
    assert m["cost_latency"] == pytest.approx(DeviceTable.load().of("pixel3", g.ops), abs=1e-6) and m["cost_latency"] <= 6.5


def test_budget_truth_by_hand():
    from nas.benchmarks import NB201Table
    from nas.benchmarks.budget_truth import budget_truth, percentile_budget, same_share_budget
    cells = [str(g) for g in itertools.islice(all_genotypes(), 250)]
    table = NB201Table({a: (float(i), 0.0, 0.0) for i, a in enumerate(cells)})  # accuracy i, cost i
    costs = {a: float(i) for i, a in enumerate(cells)}
    t = budget_truth(table, costs, 199.0)
    # 200 cells within (costs 0..199): the front is 199, the threshold the 2nd best (198)
    assert (t.within, t.front[1][0], t.threshold) == (200, 199.0, 198.0) and t.share == 200 / 250
    assert budget_truth(table, costs, 50.0).threshold == 50.0  # 51 cells: the best is the top 1%
    assert percentile_budget(costs, 50) == 124.0  # the 125th cheapest
    ties = {a: float(i // 10) for i, a in enumerate(cells)}  # groups of ten equal costs
    assert same_share_budget(ties, 25) == 1.0  # 20 cells; 2.0 would admit 30
    assert same_share_budget(ties, 30) == 2.0


def test_derive_rules_tool_counts_what_derive_and_the_ground_truth_give(tmp_path):
    """tools/derive_rules.py against its reference: derive within each budget, the top-1%
    threshold and the share of better cells, recomputed here for one run."""
    import subprocess
    import sys
    from pathlib import Path

    from nas.api import derive
    from nas.benchmarks import NB201Table
    from nas.benchmarks.budget_truth import budget_truth, parse_budget
    from nas.cli import main
    tiny = ["space.C=4", "space.N=1", "data.subset=256", "data.resize=8", "data.batch_size=32",
            "trainer.epochs=1", "trainer.max_steps_per_epoch=3", "trainer.bn_batches=0", "derive.max_skip=1"]
    assert main([*tiny, "seed=3", "--out", str(tmp_path / "r"), "--quiet"]) == 0
    tool = Path(__file__).resolve().parents[1] / "tools" / "derive_rules.py"
    done = subprocess.run([sys.executable, str(tool), str(tmp_path / "r"), "--rule", "own:", "--rule",
                           "free:max_skip=null", "--sources", "macs", "pixel3", "--percentiles", "25%", "90%",
                           "--groups", "0-2", "3-5"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = NB201Table.load()
    dev = DeviceTable.load()
    from nas.benchmarks.nb201_table import cell_costs
    for rule, keys in (("own", []), ("free", ["max_skip=null"])):
        row = []
        for pct in ("25%", "90%"):
            hits, beaten = 0, []
            for src, costs in (("macs", cell_costs("macs")), ("pixel3", dev.by_arch("pixel3"))):
                b = parse_budget(pct, costs)
                over = ([] if src == "macs" else ["metric=latency", "device=pixel3"]) + [f"target={b!r}"]
                acc = table.score(str(derive(tmp_path / "r", cost=over, rules=keys))).acc["cifar10"]
                within = [table.rows[a][0] for a in table.rows if costs[a] <= b * (1 + 1e-12)]
                hits += acc >= budget_truth(table, costs, b).threshold - 1e-9
                beaten.append(sum(x > acc + 1e-9 for x in within) / len(within))
            row.append(f"{hits}/2, {100 * sum(beaten) / 2:.0f}%")
        assert f"| {rule} | 3–5 | {row[0]} | {row[1]} |" in done.stdout, done.stdout
        assert f"| {rule} | 0–2 | – | – | – |" in done.stdout  # no run of those seeds
    bad = subprocess.run([sys.executable, str(tool), str(tmp_path / "r"), "--sources", "tpu"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown cost source 'tpu'" in bad.stderr
