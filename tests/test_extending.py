"""docs/extending.md: the page has an example of each extension point (tests/test_docs.py runs
its blocks), and the user space of examples/ is searched, derived and retrained with the
commands, from a folder that is not the checkout."""
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from recompute import retrain_test_acc


def page_blocks():
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "extending.md").read_text(), flags=re.S)


def run(args, cwd, timeout=600):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "NAS_CACHE": str(cwd / "cache")})


def test_the_section_has_an_example_of_each_extension_point():
    blocks = page_blocks()
    for decorator in ("register_op", "register_estimator", "register_dataset", "register_space"):
        assert sum(f"@nas.{decorator}(" in b for b in blocks) >= 1, decorator
    # options of one's own: an estimator option, a dataset kind, a space option (tests/test_docs.py runs them)
    options = (REPO / "docs" / "extending.md").read_text().split("## Options of your own", 1)[1]
    own = re.findall(r"```python\n(.*?)```", options, flags=re.S)
    assert len(own) == 3 and "Options = FloorOptions" in own[0] and "register_kind(" in own[1] \
        and "Options = MLPOptions" in own[2]


@pytest.mark.slow
def test_the_example_space_through_the_commands(tmp_path):
    """nas-search via imports:, nas-derive, nas-retrain --genotype RUN, and a resume, each from a
    folder that holds neither the example nor the checkout."""
    run_dir = tmp_path / "search"
    s = run([sys.executable, "-m", "nas", str(REPO / "examples" / "mobile_chain.yaml"), "trainer.epochs=2",
             "data.subset=300", "--out", str(run_dir), "--quiet"], tmp_path)
    assert s.returncode == 0, s.stderr[-3000:]
    record = yaml.safe_load((run_dir / "genotype.yaml").read_text())
    assert record["space"] == "mobile_chain" and record["imports"] == [str(REPO / "examples" / "mobile_space.py")]
    assert [layer[2] for layer in record["layers"]] == [1, 2, 2]   # C=8, N=1: one layer per stage
    assert all(1 <= w <= 8 * m for (_, w, _), m in zip(record["layers"], (1, 2, 4)))
    d = run([sys.executable, "-m", "nas.commands.derive", str(run_dir), "--out", str(tmp_path / "g.yaml")], tmp_path)
    assert d.returncode == 0, d.stderr
    derived = yaml.safe_load((tmp_path / "g.yaml").read_text())
    assert derived.pop("derived") == {"from": "search", "method": "argmax"} and derived == record
    # the retrain reads past the derive record
    r = run([sys.executable, "-m", "nas.commands.retrain", str(REPO / "examples" / "retrain_mobile_chain.yaml"),
             "--genotype", str(tmp_path / "g.yaml"), "trainer.epochs=1", "data.subset=200", "--out",
             str(tmp_path / "rt_g"), "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([sys.executable, "-m", "nas.commands.retrain", str(REPO / "examples" / "retrain_mobile_chain.yaml"),
             "--genotype", str(run_dir), "trainer.epochs=1", "data.subset=200", "--out", str(tmp_path / "rt"),
             "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m, m_g = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("rt", "rt_g"))
    assert "test_acc" in r.stdout
    # the same genotype (run folder or derived file) and seed: the same retraining; its score is the checkpoint's
    assert m["test_acc"] == m_g["test_acc"] and m["genotype"] == m_g["genotype"]
    assert m["test_acc"] == pytest.approx(retrain_test_acc(tmp_path / "rt"))
    again = run([sys.executable, "-m", "nas", "trainer.epochs=3", "--resume", str(run_dir), "--quiet"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["epochs"] == 3
