"""Fault injection, nas-compare (issue 32, items 2 and 12): a rerun resumes the searches an
interruption kept instead of deleting them (``--restart`` starts over), and a failure or a signal
stops the comparison at once, keeps what finished and writes the partial report."""
import os
import signal
import sys
import threading
import time

import pytest
import yaml

from faults import TINY, one_line, search
from nas.commands import compare
from nas.engine.signals import Interrupted, raise_on_signals
from nas.spaces.nb201 import all_genotypes


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "fake.csv"
    path.write_text("arch,cifar10,cifar100,imagenet16_120\n" + "".join(f"{g},90.0,60.0,30.0\n" for g in all_genotypes()))
    return path


def argv(out, table, seeds="0"):
    return ["--config", "quickstart", "--estimators", "softmax", "--seeds", seeds, "--no-random",
            "--out", str(out), "--table", str(table), *TINY]


def test_a_rerun_resumes_the_kept_search(tmp_path, table, capsys, monkeypatch):
    out = tmp_path / "C"
    kept = out / "softmax" / "seed0"
    assert search(*TINY, "trainer.ckpt_every=1", "--out", str(kept)) == 0
    (kept / "metrics.json").unlink()  # as a run interrupted after its checkpoint leaves it
    (kept / "genotype.yaml").unlink()
    ckpt = (kept / "checkpoint.pt").read_bytes()
    seen = []
    real = compare.subprocess.Popen

    def fake_popen(cmd, **kw):  # the search's own command, not run: what it is given is the point
        seen.append(cmd)
        return real([sys.executable, "-c", "raise SystemExit(3)"], **kw)
    monkeypatch.setattr(compare.subprocess, "Popen", fake_popen)
    assert compare.cli(argv(out, table)) == 2
    err = capsys.readouterr().err
    assert f"nas-compare: softmax seed 0: resuming the run kept in {kept} (--restart starts it over)" in err
    assert seen == [[sys.executable, "-m", "nas", "--resume", str(kept), "--quiet"]]
    assert (kept / "checkpoint.pt").read_bytes() == ckpt
    seen.clear()
    assert compare.cli([*argv(out, table), "--restart"]) == 2
    assert not kept.exists() and seen[0][-3:] == ["--out", str(kept), "--quiet"]


def test_the_first_failure_stops_the_others_and_keeps_the_finished(tmp_path, table, capsys, monkeypatch):
    out = tmp_path / "C"
    finished = out / "softmax" / "seed0"
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text('{"search_seconds": 1.0}')
    (finished / "genotype.yaml").write_text(yaml.safe_dump({"space": "nb201", "arch": str(next(iter(all_genotypes())))}))
    commands = {str(out / "softmax" / "seed1"): "import time; time.sleep(60)",
                str(out / "softmax" / "seed2"): "print('boom'); raise SystemExit(2)"}
    started = []
    real = compare.subprocess.Popen

    def fake_popen(cmd, **kw):
        started.append(cmd[cmd.index("--out") + 1])
        return real([sys.executable, "-c", commands[started[-1]]], **kw)
    monkeypatch.setattr(compare.subprocess, "Popen", fake_popen)
    t0 = time.time()
    line = one_line(capsys, compare.cli([*argv(out, table, "0,1,2"), "--jobs", "2"]), prog="nas-compare")
    assert time.time() - t0 < 30  # not after the 60 s search
    assert line == (f"nas-compare: error: softmax seed 2 failed (exit 2): boom; the other searches were stopped, "
                    f"the partial report of 1 finished search(es) is in {out / 'report.md'}; run the same command "
                    f"again to resume the rest (--restart starts over)")
    assert "| softmax | 90.00 ± 0.00 |" in (out / "report.md").read_text()


def test_ctrl_c_stops_at_once_and_queued_searches_never_start(tmp_path, table, capsys, monkeypatch):
    out = tmp_path / "C"
    started = []
    real = compare.subprocess.Popen

    def fake_popen(cmd, **kw):
        started.append(cmd)
        return real([sys.executable, "-c", "import time; time.sleep(20)"], **kw)
    monkeypatch.setattr(compare.subprocess, "Popen", fake_popen)
    threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.time()
    code = compare.cli(argv(out, table, "0,1,2"))
    assert time.time() - t0 < 15 and code == 130
    assert len(started) == 1
    assert capsys.readouterr().err.strip() == ("nas-compare: interrupted by SIGINT: no search finished; run the "
                                               "same command again to resume the rest (--restart starts over)")
