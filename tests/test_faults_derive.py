"""Fault injection, nas-derive (issue 32, items 1, 3, 4): --out never replaces a run's checkpoint,
its config or another file that is not a genotype, derive never writes into a folder a running
search holds, and a hard cost budget is never exceeded by the derived cell."""
import fcntl
import os

import pytest

from faults import TINY, files, one_line, search
from nas.commands.derive import cli as derive


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("derive") / "R"
    assert search(*TINY, "--out", str(out)) == 0
    return out


@pytest.mark.parametrize("name", ["checkpoint.pt", "config.yaml"])
def test_derive_never_writes_over_a_runs_checkpoint_or_config(run, capsys, name):
    before = files(run)
    for force in ([], ["--force"]):
        line = one_line(capsys, derive([str(run), "--out", str(run / name), *force]), prog="nas-derive")
        assert line == (f"nas-derive: error: --out {run / name} is the run's {name}; a genotype never replaces it: "
                        f"give another file, e.g. --out {run / 'genotype.yaml'}")
    assert files(run) == before


def test_derive_refuses_a_users_file_unless_forced(run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    line = one_line(capsys, derive([str(run), "--out", str(notes)]), prog="nas-derive")
    assert line == (f"nas-derive: error: --out {notes} exists and is not a genotype file; choose another --out, "
                    f"or add --force to replace it")
    assert notes.read_text() == "my notes\n"
    assert derive([str(run), "--out", str(notes), "--force"]) == 0
    assert notes.read_text().startswith("space: nb201\n")
    # a genotype file it wrote is replaced without --force, as is the run's own genotype.yaml
    assert derive([str(run), "--out", str(notes)]) == 0
    assert derive([str(run)]) == 0


def test_derive_respects_the_lock_of_a_running_search(run, tmp_path, capsys):
    before = files(run)
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running nas-search holds
        os.write(fd, b"4242\n")
        for argv in ([str(run)], [str(run), "--out", str(run / "genotype.yaml")]):
            line = one_line(capsys, derive(argv), prog="nas-derive")
            assert line == (f"nas-derive: error: {run} is in use by a running search (pid 4242); derive from its "
                            f"latest checkpoint into another file with --out FILE outside the folder, or wait for "
                            f"the run to end")
        assert files(run) == {**before, ".lock": b"4242\n"}
        elsewhere = tmp_path / "early.yaml"
        assert derive([str(run), "--out", str(elsewhere)]) == 0  # read-only: allowed
        assert elsewhere.read_text().startswith("space: nb201\n")
    finally:
        os.unlink(run / ".lock")
        os.close(fd)


DARTS = ["darts_tiny", "space.layers=3", "space.C=4", "data.subset=64", "data.resize=8", "data.batch_size=16",
         "trainer.epochs=1", "trainer.max_steps_per_epoch=2"]


def test_a_hard_budget_below_the_darts_skeleton_is_refused_up_front(tmp_path, capsys):
    out = tmp_path / "D"
    line = one_line(capsys, search(*DARTS, "cost.metric=params", "cost.target=1.0", "--out", str(out)))
    # the trained network (C=36, 20 cells) without its cells' ops: stem, preprocessing, head
    assert line == ("nas-search: error: cost.target=1 M params is below the cost of the network without its "
                    "cells' ops (1.37013); raise it or set cost.hard=false")
    assert not (out / "checkpoint.pt").exists()


def test_a_darts_derive_never_exceeds_a_hard_target(tmp_path, capsys):
    out = tmp_path / "D"
    assert search(*DARTS, "--out", str(out)) == 0
    capsys.readouterr()
    before = files(out)
    # over the skeleton (1.37 M) but under the cell the old greedy descent reached from this α: the
    # exact derive finds a cell within it
    assert derive([str(out), "--cost", "metric=params", "--cost", "target=2.0", "--out", str(tmp_path / "g.yaml")]) == 0
    cost = capsys.readouterr().out.split("cost: ")[1]
    assert float(cost.split(" M")[0]) <= 2.0 and cost.split("\n")[0].endswith("(target 2, within)")
    # under the skeleton no cell fits: refused, nothing written into the run
    line = one_line(capsys, derive([str(out), "--cost", "metric=params", "--cost", "target=1.0"]), prog="nas-derive")
    assert line.startswith("nas-derive: error: ") and "1.37013" in line, line
    assert files(out) == before  # no genotype over the target written
