"""Fault injection, run folders (issue 20, items 1-3 and the resume cases of 6-7): a folder is
owned by one run; --out never overwrites, a second writer is refused while the first runs,
--resume A --out B continues a copy, a damaged config.yaml is replaced by the checkpoint's."""
import signal

import pytest
import yaml

from faults import TINY, RUN_FILES, child, files, no_leftovers, one_line, search, wait_for
from nas.commands import retrain as retrain_command
from nas.engine.checkpoint import load_checkpoint


@pytest.fixture
def done(tmp_path):
    """A finished one-epoch search."""
    out = tmp_path / "done"
    assert search(*TINY, "--out", str(out)) == 0
    return out


def test_a_users_folder_with_their_config_is_never_overwritten(tmp_path, capsys):
    u = tmp_path / "u"
    u.mkdir()
    (u / "config.yaml").write_text("# notes\n_base_: quickstart\n")
    before = files(u)
    line = one_line(capsys, search(str(u / "config.yaml"), *TINY, "--out", str(u)))
    assert f"--out {u} would overwrite your config {u / 'config.yaml'} with the run's; choose another --out" in line
    line = one_line(capsys, search(*TINY, "--out", str(u)))  # another config, the same folder
    assert f"{u} is not empty (config.yaml) and holds no nas-search run to resume; choose another --out" in line
    assert files(u) == before


def test_a_folder_with_results_but_no_checkpoint_is_refused(done, capsys):
    (done / "checkpoint.pt").unlink()
    before = files(done)
    line = one_line(capsys, search(*TINY, "--out", str(done)))
    assert "is not empty" in line and "choose another --out" in line
    assert files(done) == before


def test_a_finished_run_names_resume_and_another_out(done, capsys):
    before = files(done)
    line = one_line(capsys, search(*TINY, "--out", str(done)))
    assert line == f"nas-search: error: {done} already holds a run; continue it with --resume {done} " \
                   f"or choose another --out"
    assert files(done) == before


def test_a_run_that_stopped_before_its_first_checkpoint_is_started_again_in_place(tmp_path, capsys):
    out = tmp_path / "o"
    one_line(capsys, search(*TINY, "data.dataset=imagefolder", f"data.root={tmp_path / 'none'}", "--out", str(out)))
    assert {p.name for p in out.iterdir()} == {"config.yaml", "log.txt"}
    assert "error: data.root: imagefolder root" in (out / "log.txt").read_text()  # the error reached log.txt
    assert search(*TINY, "--out", str(out)) == 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    no_leftovers(out)
    assert "stopped before its first checkpoint: starting it again" in (out / "log.txt").read_text()


def test_the_config_being_run_is_not_the_one_written(tmp_path, capsys):
    """A nas-written config.yaml of a folder that may be reused, given as the config: refused."""
    out = tmp_path / "o"
    one_line(capsys, search(*TINY, "space.ops=[no_such_op]", "--out", str(out)))  # fails after the folder is written
    before = (out / "config.yaml").read_bytes()
    line = one_line(capsys, search(str(out / "config.yaml"), "--out", str(out)))
    assert "would overwrite your config" in line
    assert (out / "config.yaml").read_bytes() == before


@pytest.mark.parametrize("bad, message", [
    ("file", "is a file; give a folder"),
    ("long", "File name too long (ENAMETOOLONG); give a shorter path"),
])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, bad, message):
    out = tmp_path / "x"
    if bad == "file":
        out.write_text("mine")
    else:
        out = tmp_path / ("n" * 300)
    line = one_line(capsys, search(*TINY, "--out", str(out)))
    assert message in line
    if bad == "file":
        assert out.read_text() == "mine"


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, capsys):
    """Two processes on one --out: the second (new or resuming) gets one line naming the first's
    pid; the first is not disturbed and its folder holds only its own files."""
    out = tmp_path / "c"
    first = child([*TINY, "trainer.epochs=200", "seed=1", "--out", str(out)])
    try:
        wait_for(lambda: (out / "checkpoint.pt").exists(), first, what="the first checkpoint")
        line = one_line(capsys, search(*TINY, "seed=2", "--out", str(out)))
        assert f"{out} is in use by another run (pid {first.pid}); wait for it to end, or choose another --out" in line
        line = one_line(capsys, search("--resume", str(out)))
        assert f"is in use by another run (pid {first.pid})" in line
        assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 1
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    no_leftovers(out)
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 1
    assert load_checkpoint(out)["config"]["seed"] == 1


def test_resume_with_another_out_continues_a_copy(done, tmp_path, capsys):
    before = files(done)
    copy = tmp_path / "copy"
    assert search("--resume", str(done), "trainer.epochs=2", "--out", str(copy)) == 0
    assert files(done) == before  # the source is left as it was
    assert load_checkpoint(copy)["epoch"] == 2 and load_checkpoint(done)["epoch"] == 1
    assert f"continuing a copy of {done}" in (copy / "log.txt").read_text()
    no_leftovers(copy)
    # into a folder that is not empty: refused, nothing copied
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("mine")
    capsys.readouterr()
    line = one_line(capsys, search("--resume", str(done), "--out", str(busy)))
    assert "is not empty (x.txt)" in line and f"--resume {done} alone" in line
    assert sorted(p.name for p in busy.iterdir()) == ["x.txt"]


@pytest.mark.parametrize("damage", ["garbage", "binary", "deleted", "empty", "not a config", "a wrong value"])
def test_resume_with_a_damaged_config_uses_the_checkpoints(done, capsys, damage):
    cfg = done / "config.yaml"
    if damage == "garbage":
        cfg.write_text("space: {C: [\n")
    elif damage == "binary":
        cfg.write_bytes(bytes(range(256)))
    elif damage == "deleted":
        cfg.unlink()
    elif damage == "not a config":
        cfg.write_text("shopping: [milk, eggs]\n")
    elif damage == "a wrong value":
        cfg.write_text("trainer: 3\n")
    else:
        cfg.write_text("")
    code = search("--resume", str(done), "trainer.epochs=2")
    line = one_line(capsys, code, expect_code=0)
    assert "warning:" in line and "resuming with the config stored in the checkpoint" in line
    assert load_checkpoint(done)["epoch"] == 2
    assert yaml.safe_load(cfg.read_text())["trainer"]["epochs"] == 2  # written whole again


def test_resume_of_the_other_commands_run_is_one_clear_line(done, tmp_path, capsys):
    retrain = tmp_path / "retrain"
    args = retrain_command.get_args_parser().parse_intermixed_args(
        ["retrain_nb201_digits", "trainer.epochs=1", "trainer.max_steps_per_epoch=1", "data.subset=64",
         "data.test_subset=16", "--out", str(retrain), "--quiet"])
    assert retrain_command.main(args) == 0
    capsys.readouterr()
    line = one_line(capsys, search("--resume", str(retrain)))
    assert line == f"nas-search: error: {retrain} is a nas-retrain run; continue it with nas-retrain --resume {retrain}"
    args = retrain_command.get_args_parser().parse_intermixed_args(["--resume", str(done)])
    line = one_line(capsys, retrain_command.main(args), prog="nas-retrain")
    assert line == f"nas-retrain: error: {done} is a nas-search run; continue it with nas-search --resume {done}"


def test_resume_of_a_run_without_a_checkpoint_says_there_is_none(tmp_path, capsys):
    out = tmp_path / "o"
    one_line(capsys, search(*TINY, "space.ops=[no_such_op]", "--out", str(out)))  # fails after the folder is written
    line = one_line(capsys, search("--resume", str(out)))
    assert f"{out} has no checkpoint yet" in line and f"start it again with --out {out}" in line


def test_a_copy_cut_short_by_a_full_disk_leaves_the_target_empty(done, tmp_path, capsys, monkeypatch):
    import errno
    import os
    import shutil
    before = files(done)
    real = shutil.copy2

    def copy2(src, dst, *a, **kw):
        if str(src).endswith("checkpoint.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copy2", copy2)
    copy = tmp_path / "copy"
    line = one_line(capsys, search("--resume", str(done), "--out", str(copy)))
    monkeypatch.undo()
    assert f"cannot copy the run into {copy / 'checkpoint.pt'}: No space left on device (ENOSPC)" in line
    assert list(copy.iterdir()) == [] and files(done) == before
