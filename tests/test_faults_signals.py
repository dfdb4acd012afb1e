"""Fault injection, signals (issue 20, items 5 and 7): SIGINT and SIGTERM end a run with one line
that names the checkpoint to resume (or says there is none), the same line in log.txt, exit
130/143, no temporary file or folder left (atomic writes, tarball extraction), and the run
resumes from what it says it kept."""
import os
import signal
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faults import RUN_FILES, child, log_has, no_leftovers, search, wait_for
from nas.engine.checkpoint import load_checkpoint

LONG = ["space.C=4", "data.subset=300", "data.resize=8", "trainer.max_steps_per_epoch=3", "trainer.epochs=200"]
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


def stop(proc, sig):
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_a_checkpoint_names_it_and_the_run_resumes(tmp_path, sig):
    out = tmp_path / "o"
    proc = child([*LONG, "--out", str(out)])
    wait_for(lambda: (out / "checkpoint.pt").exists(), proc, what="the first checkpoint")
    line = stop(proc, sig)
    done = load_checkpoint(out)["epoch"]
    assert line.startswith(f"nas-search: interrupted by {NAMES[sig]} in epoch ")
    assert line.endswith(f"; the checkpoint after epoch {done} of 200 is kept in {out}; "
                         f"continue with: nas-search --resume {out}")
    assert line.split("nas-search: ", 1)[1] in (out / "log.txt").read_text()
    no_leftovers(out)
    assert search("--resume", str(out), f"trainer.epochs={done + 1}") == 0
    assert load_checkpoint(out)["epoch"] == done + 1 and RUN_FILES <= {p.name for p in out.iterdir()}


def test_a_signal_before_the_first_checkpoint_says_there_is_none(tmp_path):
    out = tmp_path / "o"
    proc = child([*LONG, "trainer.ckpt_every=1000", "--out", str(out)])
    wait_for(lambda: log_has(out, "epoch 1/200"), proc, what="the first epoch")
    line = stop(proc, signal.SIGINT)
    assert line.startswith("nas-search: interrupted by SIGINT in epoch ")
    assert line.endswith(f"; no checkpoint was written yet, so there is nothing to resume; start again with --out {out}")
    assert not (out / "checkpoint.pt").exists()
    no_leftovers(out)
    assert search("space.C=4", "data.subset=300", "trainer.epochs=1", "--out", str(out)) == 0  # as it says


def test_the_default_run_folder_is_named(tmp_path):
    proc = child([*LONG], cwd=tmp_path)
    runs = tmp_path / "runs"
    wait_for(lambda: runs.is_dir() and any((d / "checkpoint.pt").exists() for d in runs.iterdir()), proc,
             what="the first checkpoint")
    line = stop(proc, signal.SIGINT)
    (folder,) = list(runs.iterdir())
    assert folder.name.startswith("quickstart-")
    assert line.endswith(f"is kept in runs/{folder.name}; continue with: nas-search --resume runs/{folder.name}")


def test_a_signal_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    out = tmp_path / "o"
    marker = tmp_path / "writing"
    slow = f"""
        import time, pathlib
        import nas.engine.checkpoint as c
        real = c._Sink.write
        def write(self, data):
            if pathlib.Path({str(out / 'checkpoint.pt')!r}).exists() and not pathlib.Path({str(marker)!r}).exists():
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(60)  # half a checkpoint written: the signal comes now
            return real(self, data)
        c._Sink.write = write
    """
    proc = child([*LONG, "--out", str(out)], prelude=slow)
    wait_for(marker.exists, proc, what="the second checkpoint's write")
    line = stop(proc, signal.SIGTERM)
    assert "the checkpoint after epoch 1 of 200 is kept" in line
    assert load_checkpoint(out)["epoch"] == 1
    no_leftovers(out)


def _deliver(sig):
    """Send ``sig`` to this process and let its Python handler run."""
    os.kill(os.getpid(), sig)
    for _ in range(10000):  # the handler runs between bytecodes
        pass


def test_a_signal_inside_a_deferred_block_ends_the_run_when_the_block_ends():
    from nas.engine.signals import Interrupted, deferred, raise_on_signals
    done = []
    with raise_on_signals():
        with pytest.raises(Interrupted) as stop:
            with deferred():
                _deliver(signal.SIGTERM)
                done.append("rest of the block")
    assert done == ["rest of the block"] and stop.value.exit_code == 143


def test_a_signal_during_a_tensorboard_write_waits_for_it(tmp_path):
    """Raised inside TensorBoard's event queue (threading.Condition.notify), a signal lost the
    writer thread's wake-up, and closing the writer hung until its next flush (two minutes)."""
    from nas.engine.monitor import Monitor
    from nas.engine.signals import Interrupted, raise_on_signals
    monitor = Monitor(tmp_path / "tb", epochs=1, quiet=True)
    real, written = monitor.writer.add_scalar, []

    def add_scalar(tag, *args, **kwargs):
        _deliver(signal.SIGINT)
        real(tag, *args, **kwargs)
        written.append(tag)

    monitor.writer.add_scalar = add_scalar
    with raise_on_signals():
        with pytest.raises(Interrupted):
            monitor.scalars({"train/loss": 1.0, "train/acc": 50.0}, 1)
    assert written == ["train/loss"]  # the call in progress ended; the next one never began
    t0 = time.time()
    assert monitor.close() is None and time.time() - t0 < 10


def test_a_retrain_ends_the_same_way(tmp_path):
    out = tmp_path / "r"
    proc = child(["retrain_nb201_digits", "trainer.epochs=200", "model.C=4", "data.subset=64",
                  "trainer.max_steps_per_epoch=2", "--out", str(out)], command="retrain")
    wait_for(lambda: (out / "checkpoint.pt").exists(), proc, what="the first checkpoint")
    line = stop(proc, signal.SIGTERM)
    done = load_checkpoint(out)["epoch"]
    assert line.startswith("nas-retrain: interrupted by SIGTERM in epoch ")
    assert line.endswith(f"the checkpoint after epoch {done} of 200 is kept in {out}; "
                         f"continue with: nas-retrain --resume {out}")
    no_leftovers(out)


# ----------------------------------------------------------------------------- extraction

@pytest.fixture
def tarball(tmp_path):
    src = tmp_path / "src" / "imgs"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(src / c / f"{i}.png")
    path = tmp_path / "imgs.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src, arcname="imgs")
    return path


def test_ctrl_c_during_extraction_leaves_no_temporary_folder(tmp_path, tarball):
    cache = tmp_path / "cache"
    slow = """
        import tarfile, time
        real = tarfile.TarFile.extractall
        def extractall(self, path, *a, **kw):
            real(self, path, *a, **kw)
            time.sleep(60)  # still inside the extraction: the files are in the temporary folder
        tarfile.TarFile.extractall = extractall
    """
    out = tmp_path / "o"
    proc = child(["space.C=4", "data.dataset=imagefolder", f"data.root={tarball}", "data.resize=8", "--out", str(out)],
                 prelude=slow, env={"NAS_CACHE": str(cache)})
    extract = cache / "extract"
    wait_for(lambda: extract.is_dir() and any(p.name.startswith(".tmp-") and any(p.rglob("*.png"))
                                              for p in extract.iterdir()), proc, what="the extraction")
    line = stop(proc, signal.SIGINT)
    assert line == f"nas-search: interrupted by SIGINT; no checkpoint was written yet, so there is nothing to " \
                   f"resume; start again with --out {out}"
    assert list(extract.iterdir()) == []  # neither the temporary folder nor a half-extracted one


def test_an_extraction_cut_by_an_interrupt_removes_its_folder_in_process(tmp_path, tarball, monkeypatch):
    from nas.data import datasets
    monkeypatch.setenv("NAS_CACHE", str(tmp_path / "cache"))

    def interrupted(self, path, *a, **kw):
        (Path(path) / "partial.png").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        datasets._extract(tarball)
    assert list((tmp_path / "cache" / "extract").iterdir()) == []


def test_the_folder_of_a_killed_extraction_is_removed_by_the_next(tmp_path, tarball, monkeypatch):
    """SIGKILL runs no cleanup: the next extraction removes folders of processes that are gone,
    and keeps those of running ones (this process stands in for a concurrent extraction)."""
    from nas.data import datasets
    monkeypatch.setenv("NAS_CACHE", str(tmp_path / "cache"))
    extract = tmp_path / "cache" / "extract"
    gone = subprocess_pid_that_ended()
    (extract / f".tmp-{gone}-abcd" / "imgs").mkdir(parents=True)
    (extract / f".tmp-{os.getpid()}-efgh").mkdir()
    dest = datasets._extract(tarball)
    assert sorted(p.name for p in extract.iterdir()) == sorted([dest.name, f".tmp-{os.getpid()}-efgh"])


def subprocess_pid_that_ended() -> int:
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    time.sleep(0.1)
    return p.pid


@pytest.mark.parametrize("when", ["collapse_warning", "_finish"])  # right after "done"; after metrics.json
def test_a_signal_right_after_done_ends_the_run_as_finished(tmp_path, capsys, monkeypatch, when):
    import nas.searcher.run as search_run
    from faults import TINY, one_line
    original = getattr(search_run, when)

    def then_a_signal(*args, **kwargs):
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(search_run, when, then_a_signal)
    out = tmp_path / "o"
    line = one_line(capsys, search(*TINY, "--out", str(out)), expect_code=0)
    assert line == f"nas-search: SIGINT arrived after the run finished; its results are complete in {out}"
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    no_leftovers(out)
