"""The cost keys end to end: a search under a budget (nb201 and darts), TensorBoard's cost
scalars, the latency table's profiling command, the NB201 lookup's budget and random search."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.benchmarks import NB201Table
from nas.benchmarks.nb201_table import DEFAULT_TABLE, cell_costs
from nas.cli import main
from nas.config import load_config
from nas.cost import LatencyTable, build_cost_table
from nas.errors import ConfigError
from nas.spaces import get_space
from nas.spaces.nb201 import NB201Genotype

REPO = Path(__file__).resolve().parents[1]
TINY = ["space.C=4", "space.N=1", "data.subset=256", "data.resize=8", "data.batch_size=32",
        "trainer.epochs=2", "trainer.max_steps_per_epoch=3", "trainer.bn_batches=0"]


def scalars(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_nb201_search_under_a_budget_stays_within_it_and_logs_the_cost(tmp_path):
    # digits come as 3-channel images of 10 classes: the trained network is NB201's benchmark network
    out = tmp_path / "run"
    assert main([*TINY, "cost.target=30", "cost.weight=2", "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    g = NB201Genotype.from_string(m["genotype"])
    space = get_space("nb201")
    t = build_cost_table(space.cost_model(), "macs", num_classes=10, in_channels=3, resolution=32, network=space.cost_model().trained_network())
    assert m["cost_macs"] == pytest.approx(t.exact(space.selected_edges(g)), abs=1e-5) and m["cost_macs"] <= 30
    s = scalars(out / "tb")
    assert len(s["cost/expected"]) == 2 and s["cost/target"] == [30.0, 30.0]
    assert s["cost/derived"][-1] == pytest.approx(m["cost_macs"], abs=1e-4)
    assert "cost: " in (out / "log.txt").read_text()
    # derive again within another budget, and in parameters
    for extra, pattern in ((["--cost", "target=12"], "M MACs (target 12, within)"),
                           (["--cost", "metric=params", "--cost", "target=0.1"], "M params (target 0.1, within)")):
        done = subprocess.run([sys.executable, "-m", "nas.commands.derive", str(out), *extra, "--out",
                               str(tmp_path / "g.yaml")], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0 and pattern in done.stdout, done.stdout + done.stderr
    # a cell derived into its own folder records where it came from; the retrain reads past that,
    # and the cost benchmark tabulates the folder as the run within the new budget
    import yaml
    from nas.retrainer.genotypes import resolve_genotype
    folder = tmp_path / "within12"
    done = subprocess.run([sys.executable, "-m", "nas.commands.derive", str(out), "--cost", "target=12", "--out",
                           str(folder / "genotype.yaml")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = yaml.safe_load((folder / "genotype.yaml").read_text())
    derived = record["derived"]
    assert derived["from"] == "../run" and derived["method"] == "argmax" and derived["cost"] == ["target=12"]
    g12 = NB201Genotype.from_string(record["arch"])
    assert derived["cost_exact"]["macs"] == pytest.approx(t.exact(space.selected_edges(g12)), abs=1e-5)
    assert derived["cost_exact"]["macs"] <= 12
    assert resolve_genotype(str(folder / "genotype.yaml"))[1] == g12
    # a derive key overridden is recorded, and labels the row
    ruled = tmp_path / "ruled"
    done = subprocess.run([sys.executable, "-m", "nas.commands.derive", str(out), "--cost", "target=12", "--derive",
                           "max_skip=0", "--out", str(ruled / "genotype.yaml")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ruled_record = yaml.safe_load((ruled / "genotype.yaml").read_text())
    assert ruled_record["derived"]["derive"] == ["max_skip=0"] and "skip_connect" not in ruled_record["arch"]
    acc = {record["arch"]: 91.5, m["genotype"]: 92.5, ruled_record["arch"]: 90.5}  # one row per distinct cell
    table = tmp_path / "t.csv"
    table.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(f"{a},{x},1,1\n" for a, x in acc.items()))
    done = subprocess.run([sys.executable, str(REPO / "tools/cost_benchmark.py"), str(folder), str(out), str(ruled), "--table",
                           str(table), "--partial-table"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "macs budget 12.0: front" in done.stdout and "macs budget 30.0: front" in done.stdout, done.stdout
    a12, a30 = acc[record["arch"]], acc[m["genotype"]]
    assert f"| softmax hinge 2 + derive within | 1 | {a12:.2f} | {a12:.2f} |" in done.stdout, done.stdout
    assert f"| softmax hinge 2 | 1 | {a30:.2f} | {a30:.2f} |" in done.stdout
    a0 = acc[ruled_record["arch"]]
    assert f"| softmax hinge 2 + derive within, max_skip 0 | 1 | {a0:.2f} | {a0:.2f} |" in done.stdout, done.stdout


def test_a_search_with_sample_within_trains_only_cells_within_the_target(tmp_path, monkeypatch):
    from nas.cost import feasible
    drawn = []
    call = feasible.FeasibleArgmax.__call__
    monkeypatch.setattr(feasible.FeasibleArgmax, "__call__", lambda self, s: drawn.append(call(self, s)) or drawn[-1])
    out = tmp_path / "run"
    assert main([*TINY, "estimator.name=gumbel_hard", "cost.target=30", "cost.weight=0", "cost.sample_within=true",
                 "--out", str(out), "--quiet"]) == 0
    space = get_space("nb201")
    t = build_cost_table(space.cost_model(), "macs", num_classes=10, in_channels=3, resolution=32, network=space.cost_model().trained_network())
    cells = {NB201Genotype(tuple(space.ops[k] for k in d.tolist())) for d in drawn}
    assert len(drawn) >= 2 * 3 and len(cells) > 1  # every training step of both epochs drew one
    assert all(t.exact(space.selected_edges(g)) <= 30 for g in cells)
    m = json.loads((out / "metrics.json").read_text())
    assert m["cost_macs"] <= 30

def test_sample_within_refuses_a_mixing_estimator_in_one_line(tmp_path, capsys):
    assert main([*TINY, "estimator.name=dirichlet", "cost.target=30", "cost.sample_within=true", "--out",
                 str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'dirichlet' mixes the candidates" in err


def test_darts_search_takes_the_same_keys(tmp_path):
    out = tmp_path / "darts"
    args = ["configs/darts_tiny.yaml", "space.layers=3", "space.steps=2", "space.multiplier=2", "data.subset=128",
            "data.resize=8", "trainer.epochs=1", "trainer.max_steps_per_epoch=2", "trainer.bn_batches=0",
            "cost.layers=8", "cost.C=16", "cost.target=60", "cost.weight=1", "cost.form=log"]
    assert main([str(REPO / args[0]), *args[1:], "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0 < m["cost_macs"] <= 60
    # the run's exact cost is the evaluation network's, counted
    from nas.utils import count_macs
    space = get_space("darts")
    g = space.genotype_from_dict({"arch": m["genotype"]})
    net = space.build_network(g, num_classes=10, C=16, layers=8, auxiliary=False)
    assert m["cost_macs"] == pytest.approx(count_macs(net, (3, 32, 32), bias=True) / 1e6, abs=1e-5)


def test_cost_config_errors_are_one_line(tmp_path, capsys):
    for args, pattern in ((["cost.metric=flops"], "cost.metric: 'flops' is not allowed"),
                          (["cost.target=1"], "below the cheapest cell"),
                          (["cost.metric=latency"], "cost.metric=latency needs cost.device (a device of the shipped NB201 table"),
                          (["cost.metric=latency", "cost.device=pixel9"], "unknown device 'pixel9'; known: 1080ti_1"),
                          (["cost.metric=latency", f"cost.latency_table={tmp_path}/none.json"], "not found"),
                          (["cost.layers=8"], "cost.layers applies to the darts space")):
        assert main([*TINY, *args, "--out", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and pattern in err, err


def test_profile_latency_then_search_with_a_latency_budget(tmp_path):
    table = tmp_path / "latency.json"
    cmd = [sys.executable, "-m", "nas.commands.profile_latency", "space.C=4", "cost.C=4", "cost.N=1",
           "cost.resolution=8", "--batch", "1", "2", "--repeats", "2", "--warmup", "1",
           "--device", "cpu", "--out", str(table), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lut = LatencyTable.load(table)
    # 3 stages x 1 edge shape x 5 ops x 2 batch sizes, and the skeleton per batch size
    assert len(lut.entries) == 3 * 5 * 2 + 2 and lut.device.startswith("cpu")
    assert all(v >= 0 for v in lut.entries.values()) and lut.op("none", 4, 4, 1, 8, 8, 1) == 0.0
    space = get_space("nb201")
    t = build_cost_table(space.cost_model(), "latency", num_classes=10, in_channels=3, resolution=8,
                         network=space.cost_model().trained_network(4, 1), latency=lut, batch_size=2)
    g = NB201Genotype(("nor_conv_3x3",) * 6)
    ops = sum(lut.op("nor_conv_3x3", c, c, 1, h, h, 2) for c, h in ((4, 8), (8, 4), (16, 2))) * 6
    assert t.exact(space.selected_edges(g)) == pytest.approx(t.fixed + ops)
    with pytest.raises(ConfigError, match="no entry for"):
        build_cost_table(space.cost_model(), "latency", num_classes=10, in_channels=3, resolution=8,
                         network=space.cost_model().trained_network(4, 1), latency=lut, batch_size=64)
    out = tmp_path / "run"
    assert main([*TINY, "cost.metric=latency", f"cost.latency_table={table}", "cost.C=4", "cost.N=1",
                 "cost.resolution=8", "--out", str(out), "--quiet"]) == 0
    assert LatencyTable.load(out / "latency.json").entries == lut.entries  # kept with the run
    assert json.loads((out / "metrics.json").read_text())["cost_latency"] > 0
    # nas-derive reports the cost against the run's own table
    done = subprocess.run([sys.executable, "-m", "nas.commands.derive", str(out)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0 and "cost: " in done.stdout and " ms" in done.stdout, done.stderr


def test_profile_latency_times_the_runs_own_candidates_with_their_options(tmp_path):
    # space.ops adds a candidate the space's own list lacks (dnf_1x1), built with space.op_args: the
    # table keys it with its options, and the cost table reads that entry, not the default op's
    table = tmp_path / "latency.json"
    cmd = [sys.executable, "-m", "nas.commands.profile_latency", "space.C=4", "cost.C=4", "cost.N=1",
           "cost.resolution=8", "space.ops=[none,nor_conv_1x1,dnf_1x1]", "space.op_args={dnf_1x1: {rules: 2}}",
           "--repeats", "2", "--warmup", "1", "--device", "cpu", "--out", str(table), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lut = LatencyTable.load(table)
    keys = sorted(k for k in lut.entries if k.startswith("dnf_1x1"))
    assert keys == ['dnf_1x1{"rules":2}|16|16|1|2x2|b1', 'dnf_1x1{"rules":2}|4|4|1|8x8|b1',
                    'dnf_1x1{"rules":2}|8|8|1|4x4|b1']
    space = get_space("nb201")
    ops = ["none", "nor_conv_1x1", "dnf_1x1"]
    t = build_cost_table(space.cost_model(), "latency", num_classes=10, in_channels=3, resolution=8,
                         network=space.cost_model().trained_network(4, 1), latency=lut, ops=ops,
                         op_args={"dnf_1x1": {"rules": 2}})
    want = sum(lut.entries[k] for k in keys)
    assert float(t.edges["arch.cell"][0, t.column("dnf_1x1")]) == pytest.approx(want)
    with pytest.raises(ConfigError, match=r'no entry for dnf_1x1\{"rules":3\} on 4x8x8 at batch 1; measure it'):
        build_cost_table(space.cost_model(), "latency", num_classes=10, in_channels=3, resolution=8,
                         network=space.cost_model().trained_network(4, 1), latency=lut, ops=ops,
                         op_args={"dnf_1x1": {"rules": 3}})


def test_lookup_best_cell_within_a_budget(tmp_path):
    rows = [("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|", 94.0),
            ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 90.0),
            ("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 85.0),
            ("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 80.0),
            ("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 70.0)]
    path = tmp_path / "t.csv"
    path.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(f"{a},{x},1,1\n" for a, x in rows))
    table = NB201Table.load(path, partial=True)  # five cells of the 15,625
    costs = cell_costs()
    assert costs[rows[0][0]] == pytest.approx(220.11969) and costs[rows[3][0]] == pytest.approx(7.78305)
    # 7.78 + one conv3x3 (35.39) = 43.17; + one conv1x1 = 11.72
    assert table.best_within(50, costs)[:2] == (rows[1][0], 90.0)
    assert table.best_within(20, costs)[:2] == (rows[2][0], 85.0)
    assert table.best_within(7, costs) is None
    assert [a for _, a, _ in table.front(costs)] == [rows[3][0], rows[2][0], rows[1][0], rows[0][0]]
    done = subprocess.run([sys.executable, "-m", "nas.commands.lookup", "--budget", "50", "--table", str(path),
                           "--partial-table"], capture_output=True, text=True)
    assert done.returncode == 0 and rows[1][0] in done.stdout and "90.00%" in done.stdout, done.stderr


def test_kendall_tau_b_against_hand_counts():
    import math
    from nas.benchmarks.nb201_table import kendall_tau_b
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)   # C=5, D=1 of 6 pairs
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2 * 3))  # one pair tied in x
    assert math.isnan(kendall_tau_b([5, 5, 5], [1, 2, 3]))
    with pytest.raises(ValueError):
        kendall_tau_b([1, 2], [1])


def test_lookup_lists_the_best_cells_under_a_derive_rule(tmp_path):
    rows = [("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 90.0, 70.0, 40.0),   # 43.17
            ("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|skip_connect~1|avg_pool_3x3~2|", 89.0, 71.0, 42.0),
            ("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|", 88.0, 72.0, 41.0),
            ("|nor_conv_1x1~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|", 87.0, 69.0, 43.0),
            ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|", 95.0, 75.0, 45.0)]
    path = tmp_path / "t.csv"
    path.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    table = NB201Table.load(path, partial=True)
    costs = cell_costs()
    assert [a for a, _, _ in table.top_within(50, costs, 10)] == [r[0] for r in rows[:4]]  # the 2-conv3x3 cell is over
    assert [a for a, _, _ in table.top_within(50, costs, 2)] == [rows[0][0], rows[1][0]]
    done = subprocess.run([sys.executable, "-m", "nas.commands.lookup", "--budget", "50", "--top", "5",
                           "--exclude", "none", "--max-skip", "1", "--table", str(path), "--partial-table"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "2 best cells within 50 M MACs, without none, at most 1 skip_connect, by CIFAR-10:"
    assert lines[2].split() == ["88.00", "72.00", "41.00", f"{costs[rows[2][0]]:.2f}", rows[2][0]]
    assert lines[3].split()[0] == "87.00" and len(lines) == 4  # two cells: no rank agreement line
    done = subprocess.run([sys.executable, "-m", "nas.commands.lookup", "--budget", "50", "--top", "4",
                           "--table", str(path), "--partial-table"], capture_output=True, text=True)
    # CIFAR-10 90 > 89 > 88 > 87 against CIFAR-100 70, 71, 72, 69: C=3, D=3 of 6 pairs; against
    # ImageNet16 40, 42, 41, 43: only (42, 41) concordant, C=1, D=5
    assert done.stdout.splitlines()[-1].endswith("CIFAR-10~CIFAR-100 0.00, CIFAR-10~ImageNet16-120 -0.67"), done.stdout
    for bad, msg in ((["--top", "3"], "give --budget"), (["--budget", "50", "--exclude", "conv"], "unknown op 'conv'"),
                     (["--budget", "50", "--top", "0"], "at least 1")):
        done = subprocess.run([sys.executable, "-m", "nas.commands.lookup", *bad, rows[0][0], "--table",
                               str(path), "--partial-table"], capture_output=True, text=True)
        assert done.returncode == 2 and msg in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_the_real_table_fronts_at_the_issue_budgets():
    table = NB201Table.load(DEFAULT_TABLE)  # the table the package ships
    costs = cell_costs()
    assert round(table.best_within(55, costs)[1], 2) == 93.75
    assert round(table.best_within(95, costs)[1], 2) == 94.31


def test_random_search_draws_only_cells_within_the_budget():
    from nas.benchmarks.random_search import within_budget
    cfg = load_config(None, ["cost.target=20"])
    fits = within_budget(cfg, get_space("nb201"), 10, 3)
    assert fits(NB201Genotype(("nor_conv_1x1", "nor_conv_1x1", "none", "none", "none", "none")))  # 15.65
    assert not fits(NB201Genotype(("nor_conv_3x3", "none", "none", "none", "none", "none")))      # 43.17
    assert within_budget(load_config(None, []), get_space("nb201"), 10, 3)(NB201Genotype(("nor_conv_3x3",) * 6))


def test_cost_benchmark_prints_the_table_and_writes_the_plot(tmp_path):
    rows = [("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|", 94.0),
            ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 90.0),
            ("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|", 85.0)]
    path = tmp_path / "t.csv"
    path.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(f"{a},{x},1,1\n" for a, x in rows))
    runs = []
    for i, (arch, method) in enumerate([(rows[1][0], "softmax"), (rows[2][0], "softmax"), (rows[2][0], "random")]):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "config.yaml").write_text(f"estimator: {{name: softmax}}\ncost: {{metric: macs, target: 50, weight: 1}}\n")
        (run / "genotype.yaml").write_text(f"space: nb201\narch: '{arch}'\n")
        (run / "metrics.json").write_text(json.dumps({"search_seconds": 10 + i, **({"method": "random"} if method == "random" else {})}))
        runs.append(str(run))
    png = tmp_path / "front.png"
    done = subprocess.run([sys.executable, str(REPO / "tools/cost_benchmark.py"), *runs, "--table", str(path),
                           "--partial-table", "--png", str(png)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "macs budget 50.0: front 90.00" in out
    assert "| softmax hinge 1 | 2 | 87.50 ± 3.54 | 85.00 |" in out and "| yes | -2.50 | 10 |" in out
    assert "| random | 1 | 85.00 | 85.00 |" in out
    from PIL import Image
    assert Image.open(png).size == (900, 600)


def test_cost_benchmark_labels_name_how_the_budget_entered_the_search():
    import importlib.util
    spec = importlib.util.spec_from_file_location("cost_benchmark", REPO / "tools/cost_benchmark.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    est = {"name": "softmax"}
    assert tool.label({"estimator": est, "cost": {"target": 55, "weight": 0}}) == "softmax w=0"
    assert tool.label({"estimator": est, "cost": {"target": None, "weight": 0}}) == "softmax"  # a dumped unbudgeted run
    assert tool.label({"estimator": est, "cost": {"target": 55}}) == "softmax w=0"  # the default: derive within
    assert tool.label({"estimator": est, "cost": {"target": 55, "weight": 1}}) == "softmax hinge 1"
    assert (tool.label({"estimator": est, "cost": {"target": 55, "weight": 1, "form": "abs", "estimate": "derived"}})
            == "softmax abs 1 derived")
    assert (tool.label({"estimator": est, "cost": {"target": 55, "weight": 1, "estimate": "derived", "warmup_epochs": 2}})
            == "softmax hinge 1 derived after 2 ep")
    assert tool.label({"estimator": est, "cost": {"target": None}}) == tool.label({"estimator": est}) == "softmax"
    assert (tool.label({"estimator": est, "cost": {"target": 55, "weight": 1}}, derived_within=True)
            == "softmax hinge 1 + derive within")
    assert tool.label({"estimator": est, "cost": {"target": None}}, derived_within=True) == "softmax derive within"
    assert tool.label({"estimator": est}, derived_within=True) == "softmax derive within"
    ste = {"name": "ste"}
    assert tool.label({"estimator": ste, "cost": {"target": 55, "weight": 0, "sample_within": True}}) == "ste sample within"
    assert (tool.label({"estimator": ste, "cost": {"target": 55, "weight": 1, "sample_within": True}})
            == "ste sample within + ste hinge 1")


def test_front_plot_widens_for_long_names_and_tells_repeated_colours_apart():
    from nas.cost.plot import front_plot
    from nas.utils.draw import PALETTE as _PALETTE
    marks = {f"method {i} with a rather long name @55": [(10.0 + i, 90.0)] for i in range(len(_PALETTE) + 1)}
    img = front_plot([(0.0, 86.0), (40.0, 94.0)], [(0.0, 86.0), (40.0, 94.0)], [20.0], marks,
                     x_label="macs", y_label="acc")
    assert img.size[0] > 900 and img.size[1] == 600  # the legend is not cut
    short = front_plot([(0.0, 86.0), (40.0, 94.0)], [], [], {"a": [(1.0, 90.0)]}, x_label="x", y_label="y")
    assert short.size == (900, 600)
    # the 11th method shares the 1st one's colour: a square (its corner is drawn), not a circle
    W = img.size[0]
    right = W - 900 + 190
    x, y = W - right + 17, 40 + 10 + 20 * len(_PALETTE) + 5
    assert img.getpixel((x - 5, y - 5)) == _PALETTE[0]
    assert img.getpixel((x - 5, 40 + 10 + 5 - 5)) != _PALETTE[0]  # the 1st is a circle: no corner
