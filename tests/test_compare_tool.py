"""nas-compare end to end on tiny digits searches, scored with a fake NB201 table."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nas.spaces.nb201 import all_genotypes

REPO = Path(__file__).resolve().parents[1]
TINY = ["space.C=4", "space.N=1", "data.subset=200", "data.resize=8", "data.batch_size=32",
        "trainer.epochs=1", "trainer.max_steps_per_epoch=2"]


def fake_accuracy(arch: str) -> float:
    # a made-up ground truth the test can recompute: +3 per conv3x3, +2 per conv1x1, -1 per none
    return 80.0 + 3 * arch.count("nor_conv_3x3") + 2 * arch.count("nor_conv_1x1") - arch.count("none")


@pytest.mark.slow
def test_compare_runs_end_to_end(tmp_path):
    table = tmp_path / "fake.csv"
    table.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(
        f"{g},{fake_accuracy(str(g))},{fake_accuracy(str(g)) - 30},1.0\n" for g in all_genotypes()))
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "nas.commands.compare", "--config", "quickstart", "--estimators",
           "softmax,gumbel_hard", "--seeds", "0,1", "--out", str(out), "--table", str(table),
           "--random-budget", "1", "--threads", "1", "--device", "cpu", *TINY]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"softmax", "gumbel_hard", "random"}
    report = (out / "report.md").read_text()
    assert report in r.stdout
    for method, rows in results.items():
        assert [row["seed"] for row in rows] == [0, 1]
        for row in rows:
            run = out / method / f"seed{row['seed']}"
            assert row["arch"] == yaml.safe_load((run / "genotype.yaml").read_text())["arch"]
            assert row["cifar10"] == pytest.approx(fake_accuracy(row["arch"]))
            # the tool's rank agrees with a count over the fake table
            better = sum(fake_accuracy(str(g)) > row["cifar10"] for g in all_genotypes())
            assert row["rank"] == better + 1
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            assert cfg["seed"] == row["seed"] and cfg["space"]["C"] == 4 and cfg["device"] == "cpu"
            if method != "random":
                assert cfg["estimator"]["name"] == method
        accs = [row["cifar10"] for row in rows]
        assert f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}" in report
        c100 = [row["cifar100"] for row in rows]   # the fake table's CIFAR-100 is CIFAR-10 - 30
        assert c100 == pytest.approx([a - 30 for a in accs])
        line = next(ln for ln in report.splitlines() if ln.startswith(f"| {method}" if method != "random" else "| random"))
        assert f"| {statistics.mean(c100):.2f} ± {statistics.stdev(c100):.2f} | 1.00 ± 0.00 |" in line
        secs = [row["search_seconds"] for row in rows]
        assert f"| {statistics.mean(secs) / 60:.1f}, {max(secs) / 60:.1f} |" in line
        assert all("`" + row["arch"].replace("|", "\\|") + "`" in report for row in rows)
    # the random baseline trained at least one cell per seed within its 1-second budget
    assert all(row["cells_trained"] >= 1 for row in results["random"])
    # a finished comparison is reused, not searched again
    before = (out / "softmax" / "seed0" / "metrics.json").stat().st_mtime_ns
    r2 = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert r2.returncode == 0 and (out / "softmax" / "seed0" / "metrics.json").stat().st_mtime_ns == before


def test_compare_rejects_bad_input_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nas.commands.compare", "--config", "quickstart",
                        "--estimators", "softmax", "--seeds", "0", "--table", str(tmp_path / "no.csv")],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "NB201 table" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "t.csv").write_text("arch,cifar10,cifar100,imagenet16_120\n"
                                    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10,1,1\n")
    r = subprocess.run([sys.executable, "-m", "nas.commands.compare", "--config", "quickstart",
                        "--estimators", "softmax,nope", "--seeds", "0", "--out", str(tmp_path / "o"),
                        "--table", str(tmp_path / "t.csv"), "--partial-table", *TINY],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "unknown estimator 'nope'" in r.stderr
    assert not (tmp_path / "o").exists()  # nothing was searched


def test_labelled_variants_get_their_own_overrides():
    from nas.commands import compare as ce
    assert ce.split_label("fast=softmax") == ("fast", "softmax")
    assert ce.split_label("ste+noise") == ("ste+noise", "ste+noise")
    sets = ["fast:optim.arch.lr=1e-3", "softmax:trainer.epochs=2", "dir:optim.arch.lr=3e-3"]
    fast = ce.estimator_overrides("softmax", {"name": "softmax"}, sets, "fast")
    plain = ce.estimator_overrides("softmax", {"name": "softmax"}, sets, "softmax")
    assert "optim.arch.lr=1e-3" in fast and "trainer.epochs=2" in fast
    assert "optim.arch.lr=1e-3" not in plain and "trainer.epochs=2" in plain
    assert "optim.arch.lr=3e-3" not in fast + plain
    noisy = ce.estimator_overrides("ste+noise", {"name": "softmax"}, sets, "sn")
    assert noisy[0] == 'estimator={"name": "ste"}' and "estimator.noise=adaptive" in noisy


def test_the_skip_limit_carries_over_to_estimators_with_logits():
    from nas.commands import compare as ce
    section, derive = {"name": "softmax"}, {"exclude": ["none"], "max_skip": 1}
    # the derive: section stays for every estimator with logits
    assert ce.estimator_overrides("gumbel_hard", section, [], "", derive)[:2] == \
        ['estimator={"name": "gumbel_hard"}', "estimator.name=gumbel_hard"]
    assert ce.estimator_overrides("ste+noise", section, [], "", derive)[0] == 'estimator={"name": "ste"}'
    # bop keeps a discrete state, no logits to rank the skip edges by
    assert ce.estimator_overrides("bop", section, [], "", derive)[:3] == \
        ['estimator={"name": "bop"}', "derive.exclude=[]", "derive.max_skip=null"]
    assert ce.estimator_overrides("bop", section, [], "", {"max_skip": 1})[1] == "derive.max_skip=null"
    assert ce.estimator_overrides("bop", section, [], "", {"max_skip": 1, "min_skip": 1})[1:3] == \
        ["derive.max_skip=null", "derive.min_skip=null"]
    # the estimator the config names keeps its whole section
    assert not any(o.startswith("estimator=") for o in ce.estimator_overrides("softmax", section, [], "", derive))


def test_compare_rejects_duplicate_labels(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nas.commands.compare", "--config", "quickstart",
                        "--estimators", "a=softmax,a=gumbel", "--seeds", "0", "--out", str(tmp_path / "o"),
                        *TINY], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "its own label" in r.stderr


def _recipe(path, body):
    path.write_text(body)
    return path


@pytest.mark.slow
def test_compare_runs_recipes_times_seeds(tmp_path):
    table = tmp_path / "fake.csv"
    table.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(
        f"{g},{fake_accuracy(str(g))},{fake_accuracy(str(g)) - 30},1.0\n" for g in all_genotypes()))
    rs = _recipe(tmp_path / "rs.yaml", "_base_: quickstart\noptim: {hooks: {sdarts: {mode: rs}}}\n")
    kl = _recipe(tmp_path / "kl.yaml", "_base_: quickstart\nestimator: {name: dirichlet}\n"
                                       "optim: {regularisers: {drnas_kl: {weight: 0.01}}}\n")
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "nas.commands.compare", "--recipes", f"{rs},klreg={kl}",
                        "--seeds", "0,1", "--out", str(out), "--table", str(table), "--no-random",
                        "--threads", "1", "--device", "cpu", "--set", "klreg:optim.regularisers.drnas_kl.weight=0.02",
                        *TINY], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"rs", "klreg"} and all([x["seed"] for x in v] == [0, 1] for v in results.values())
    cfg = yaml.safe_load((out / "klreg" / "seed1" / "config.yaml").read_text())
    assert cfg["estimator"]["name"] == "dirichlet" and cfg["seed"] == 1
    assert cfg["optim"]["regularisers"] == {"drnas_kl": {"weight": 0.02}}
    cfg = yaml.safe_load((out / "rs" / "seed0" / "config.yaml").read_text())
    assert cfg["optim"]["hooks"] == {"sdarts": {"mode": "rs"}} and cfg["space"]["C"] == 4

    # the recipe's derive rule changes: the finished searches are derived again, not searched again
    from nas.api import derive
    base = [sys.executable, "-m", "nas.commands.compare", "--recipes", str(rs), "--seeds", "0,1", "--out", str(out),
            "--table", str(table), "--no-random", "--threads", "1", "--device", "cpu", *TINY]
    searched = {s: (out / "rs" / f"seed{s}" / "metrics.json").stat().st_mtime_ns for s in (0, 1)}
    r = subprocess.run(base + ["--set", "rs:derive.exclude=[skip_connect]"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("derived again with derive.exclude=['skip_connect']") == 2
    for s in (0, 1):
        run = out / "rs" / f"seed{s}"
        assert (run / "metrics.json").stat().st_mtime_ns == searched[s]
        arch = yaml.safe_load((run / "genotype.yaml").read_text())["arch"]
        assert "skip_connect" not in arch and arch == str(derive(run, exclude="skip_connect"))
        assert yaml.safe_load((run / "config.yaml").read_text())["derive"]["exclude"] == ["skip_connect"]
    rows = json.loads((out / "results.json").read_text())["rs"]
    assert [x["arch"] for x in rows] == [yaml.safe_load((out / "rs" / f"seed{s}" / "genotype.yaml").read_text())["arch"]
                                         for s in (0, 1)]
    # the same command again finds the runs current: nothing derived again
    r = subprocess.run(base + ["--set", "rs:derive.exclude=[skip_connect]"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and "derived again" not in r.stderr
    # any other change would report a search the command did not ask for: one line, nothing run
    r = subprocess.run(base + ["--set", "rs:trainer.epochs=2", "--set", "rs:derive.exclude=[skip_connect]"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "was searched with trainer.epochs=1 and the command asks for 2; give another --out, or --restart" in r.stderr
    assert (out / "rs" / "seed0" / "metrics.json").stat().st_mtime_ns == searched[0]


def test_compare_recipes_fail_before_searching(tmp_path):
    bad = _recipe(tmp_path / "bad.yaml", "_base_: quickstart\noptim: {hooks: {sdarts: {epsilon: -1}}}\n")
    (tmp_path / "t.csv").write_text("arch,cifar10,cifar100,imagenet16_120\n"
                                    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10,1,1\n")
    for recipes, message in ((str(bad), "optim.hooks.sdarts.epsilon=-1.0 is out of range"),
                             ("no_such_recipe", "neither a YAML file nor a shipped recipe; shipped: bop, bop_noise, darts, drnas")):
        r = subprocess.run([sys.executable, "-m", "nas.commands.compare", "--recipes", recipes, "--seeds", "0",
                            "--out", str(tmp_path / "o"), "--table", str(tmp_path / "t.csv"), "--partial-table"],
                           cwd=REPO, capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
