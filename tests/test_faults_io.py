"""Fault injection, I/O (issue 20, item 6): a full disk, a folder that may not be written, a name
too long and undecodable input end the command with one line naming the path and the fix, also
written to log.txt; the last checkpoint stays whole and the run resumes from it."""
import errno
import os
import threading

import pytest
import torch

from faults import TINY, RUN_FILES, files, no_leftovers, one_line, search
from nas.engine.checkpoint import load_checkpoint

THREE = ["space.C=4", "data.subset=300", "trainer.epochs=3", "trainer.bn_batches=2"]


def enospc(*_args, **_kw):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_resumes(out, epochs=3):
    assert search("--resume", str(out), f"trainer.epochs={epochs}") == 0
    assert load_checkpoint(out)["epoch"] == epochs
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    no_leftovers(out)


def test_a_full_disk_at_the_rename_of_the_second_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    real, calls = os.replace, []

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("checkpoint.pt"):
            calls.append(dst)
            if len(calls) == 2:
                enospc()
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    line = one_line(capsys, search(*THREE, "--out", str(out)))
    monkeypatch.undo()
    assert line == (f"nas-search: error: cannot write {out / 'checkpoint.pt'}: No space left on device (ENOSPC); "
                    f"free space on that disk, or give a run folder on another disk (--out); the checkpoint after "
                    f"epoch 1 of 3 is kept in {out}; continue with: nas-search --resume {out}")
    assert line.split("error: ", 1)[1] in (out / "log.txt").read_text()
    assert load_checkpoint(out)["epoch"] == 1  # the previous one, whole
    no_leftovers(out)
    assert_resumes(out)


def test_a_full_disk_while_the_checkpoint_is_written(tmp_path, capsys, monkeypatch):
    """torch.save would turn the write's OSError into "unexpected pos": the cause still shows."""
    out = tmp_path / "o"
    real = os.write

    def write(fd, data):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if "checkpoint.pt." in target and target.endswith(".tmp") and (out / "checkpoint.pt").exists():
            enospc()
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    line = one_line(capsys, search(*THREE, "--out", str(out)))
    monkeypatch.undo()
    assert f"cannot write {out / 'checkpoint.pt'}: No space left on device (ENOSPC)" in line
    assert "the checkpoint after epoch 1 of 3 is kept" in line
    no_leftovers(out)
    assert_resumes(out)


def test_a_full_disk_in_the_tensorboard_writer_thread(tmp_path, capsys, monkeypatch):
    """The event file is written by a background thread; its error is one line, no thread
    traceback, and the checkpoint written before it stays."""
    from tensorboard.summary.writer.record_writer import RecordWriter
    out = tmp_path / "o"
    real, seen = RecordWriter.write, []

    def write(self, data):
        if load_checkpoint(out)["epoch"] >= 1 if (out / "checkpoint.pt").exists() else False:
            seen.append(threading.current_thread().name)
            enospc()
        return real(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    line = one_line(capsys, search(*THREE, "--out", str(out)))
    monkeypatch.undo()
    assert seen and seen[0] != threading.main_thread().name  # it did fail in the writer's thread
    assert f"cannot write TensorBoard events to {out / 'tb'}: No space left on device (ENOSPC)" in line
    assert "is kept in" in line
    no_leftovers(out)
    assert_resumes(out)


def test_a_full_disk_for_the_results(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    real = os.replace

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("metrics.json"):
            enospc()
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    line = one_line(capsys, search(*TINY, "--out", str(out)))
    monkeypatch.undo()
    assert f"cannot write {out / 'metrics.json'}: No space left on device" in line
    assert "the checkpoint after epoch 1 of 1 is kept" in line
    assert not (out / "metrics.json").exists()
    no_leftovers(out)
    assert_resumes(out, epochs=1)  # resuming a finished checkpoint writes the results


def test_a_log_that_cannot_be_written_prints_no_logging_traceback(tmp_path, capsys, monkeypatch):
    import logging
    out = tmp_path / "o"
    monkeypatch.setattr(logging.FileHandler, "flush", lambda self: enospc())
    code = search(*TINY, "--out", str(out))
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 0 and "Logging error" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("errno_, reason, fix", [
    (errno.EACCES, "Permission denied (EACCES)", "make it writable for you, or give another folder (--out)"),
    (errno.EROFS, "Read-only file system (EROFS)", "that file system is read-only: give a folder on a writable "
                                                    "one (--out)"),
])
def test_a_folder_that_may_not_be_written(tmp_path, capsys, monkeypatch, errno_, reason, fix):
    """As root, chmod does not stop writes: the error is injected where the folder is made."""
    from pathlib import Path
    out = tmp_path / "ro" / "o"

    def mkdir(self, *a, **kw):
        raise OSError(errno_, os.strerror(errno_), str(self))

    monkeypatch.setattr(Path, "mkdir", mkdir)
    line = one_line(capsys, search(*TINY, "--out", str(out)))
    monkeypatch.undo()
    assert line == f"nas-search: error: cannot create the run folder {out}: {reason}; {fix}"


def test_a_non_utf8_config_and_a_number_in_base(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    line = one_line(capsys, search(str(bad), "--out", str(tmp_path / "o")))
    assert line == f"nas-search: error: {bad} is not UTF-8 text (byte 0xe9 at offset 9); give a YAML config saved as UTF-8"
    base = tmp_path / "base.yaml"
    base.write_text("_base_: [quickstart, 3]\n")
    line = one_line(capsys, search(str(base), "--out", str(tmp_path / "o")))
    assert line == f"nas-search: error: {base}: _base_ must be a config name or path, or a list of them, " \
                   f"got ['quickstart', 3]"
    dup = tmp_path / "dup.yaml"
    dup.write_text("_base_: quickstart\ntrainer:\n  epochs: 3\n  epochs: 4\n")
    line = one_line(capsys, search(str(dup), "--out", str(tmp_path / "o")))
    assert "line 4: not valid YAML (key 'epochs' is given twice (lines 3 and 4); keep one)" in line
    assert not (tmp_path / "o").exists()


def test_a_binary_genotype_file_for_retrain(tmp_path, capsys):
    from nas.commands import retrain as retrain_command
    g = tmp_path / "genotype.yaml"
    g.write_bytes(bytes(range(256)))
    args = retrain_command.get_args_parser().parse_intermixed_args(
        ["retrain_nb201_digits", "--genotype", str(g), "--out", str(tmp_path / "o"), "--quiet"])
    line = one_line(capsys, retrain_command.main(args), prog="nas-retrain")
    assert f"{g} is not valid YAML" in line
    assert not (tmp_path / "o").exists()


def test_the_folder_is_left_as_it_was_by_a_refused_run(tmp_path, capsys):
    out = tmp_path / "o"
    assert search(*TINY, "--out", str(out)) == 0
    before = files(out)
    line = one_line(capsys, search("--resume", str(out), "space.C=8"))
    after = files(out)
    log_before, log_after = before.pop("log.txt"), after.pop("log.txt")
    assert after == before
    assert log_after.startswith(log_before) and line.split("error: ", 1)[1] in log_after.decode()


def test_a_truncated_checkpoint_is_named_in_whole_words(tmp_path):
    from nas.errors import CheckpointError
    whole = tmp_path / "whole.pt"
    torch.save({"model": {"w": torch.zeros(1000)}, "epoch": 1, "config": {}}, whole)
    cut = tmp_path / "checkpoint.pt"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(cut)
    msg = str(e.value)
    assert msg == (f"checkpoint {cut} is corrupt or not a nas checkpoint (PytorchStreamReader failed reading "
                   f"zip archive: failed finding central directory)"), msg
