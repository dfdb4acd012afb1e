"""Exact resume: an interrupted search continued from its checkpoint equals an uninterrupted one
bit for bit (CPU); a changed ``trainer.epochs`` re-plans the schedules; mismatched or corrupt
checkpoints are one-line errors; checkpoints are written atomically; a SIGKILLed search resumes."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from nas.cli import main
from nas.config import load_config
from nas.errors import CheckpointError
from nas.estimators import ESTIMATORS
from nas.engine.checkpoint import load_checkpoint, save_atomic
from nas.engine.run_folder import check_resume_config
from nas.engine.runtime import replan_epochs
from nas.searcher.run import RESUMABLE_CHANGES, run_search

REPO = Path(__file__).resolve().parents[1]
TINY = ["trainer.max_steps_per_epoch=2", "space.C=4", "space.N=1", "data.resize=8",
        "data.batch_size=16", "data.subset=120", "device=cpu"]
RUN_FILES = {"config.yaml", "genotype.yaml", "checkpoint.pt", "tb", "log.txt", "metrics.json"}

CASES = [("softmax", {}), ("gumbel_hard", {}), ("reinmax", {}),
         # step hooks keep state (SDARTS's ε, OLES's scores and frozen ops) and draw random numbers
         ("softmax", {"optim.hooks": "{sdarts: {mode: rs}, oles: {threshold: 0.5, window: 2}, lambda_darts: {}}"}),
         ("dirichlet", {"optim.regularisers": "{drnas_kl: {weight: 0.1}}"}),
         pytest.param("bop", {"estimator.noise": "adaptive"},
                      marks=pytest.mark.skipif("bop" not in ESTIMATORS.names(),
                                               reason="the bop estimator is not registered yet"))]


# both runs of a comparison on one thread: float reductions happen in the same order
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(*items, **kw):
    return load_config(None, TINY + list(items) + [f"{k}={v}" for k, v in kw.items()])


def assert_same(a, b, path="state"):
    """Recursive exact equality of checkpoint contents (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def arch_state(ckpt):
    return {k: v for k, v in ckpt["model"].items() if k.startswith("arch.")}


@pytest.mark.parametrize("name,extra", CASES)
def test_interrupted_then_resumed_equals_uninterrupted_bitwise(tmp_path, name, extra):
    cfg = tiny("trainer.epochs=4", f"estimator.name={name}", *[f"{k}={v}" for k, v in extra.items()])
    full = run_search(cfg, tmp_path / "full", quiet=True)

    part = run_search(cfg, tmp_path / "split", quiet=True, stop_after=2)
    assert part.metrics["finished"] is False and part.metrics["epochs_done"] == 2
    assert load_checkpoint(tmp_path / "split")["epoch"] == 2
    assert not (tmp_path / "split" / "metrics.json").exists()
    resumed = run_search(cfg, tmp_path / "split", quiet=True, resume=True)

    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "split")
    assert a["epoch"] == b["epoch"] == 4
    assert arch_state(a) and all(torch.equal(v, arch_state(b)[k]) for k, v in arch_state(a).items())
    assert_same(a["model"], b["model"], "model")          # weights and BN running statistics
    assert_same(a["optim"], b["optim"], "optim")          # SGD momentum, Adam moments, Bop momentum, LR schedule
    assert_same(a["estimator"], b["estimator"], "estimator")
    assert_same(a["step_hooks"], b["step_hooks"], "step_hooks")
    assert_same(a["loaders"], b["loaders"], "loaders")
    assert_same(a["rng"]["torch"], b["rng"]["torch"], "rng")
    assert resumed.genotype_str == full.genotype_str
    assert resumed.metrics["history"] == full.metrics["history"]
    assert resumed.metrics["val_acc"] == full.metrics["val_acc"]


def test_resume_with_more_epochs_replans_the_schedules(tmp_path):
    """A finished 2-epoch search resumed with trainer.epochs=4: epochs 3-4 follow the 4-epoch
    cosine LR and the 4-epoch linear τ schedule (GDAS τ 10 -> 0.1)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = tiny("trainer.epochs=2", "estimator.name=gumbel_hard", "optim.weights.lr=0.05", "optim.weights.lr_min=0.001")
    run_search(cfg, tmp_path / "r", quiet=True)
    assert main(["--resume", str(tmp_path / "r"), "trainer.epochs=4", "--quiet"]) == 0
    ea = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    lr = {e.step: e.value for e in ea.Scalars("lr/weights")}
    tau = {e.step: e.value for e in ea.Scalars("estimator/tau")}
    cos = lambda t, T: 0.001 + (0.05 - 0.001) * (1 + math.cos(math.pi * t / T)) / 2  # noqa: E731
    assert [lr[s] for s in (1, 2, 3, 4)] == pytest.approx([cos(1, 2), cos(2, 2), cos(3, 4), cos(4, 4)], rel=1e-6)
    assert [tau[s] for s in (1, 2, 3, 4)] == pytest.approx([10.0, 0.1, 10 - 9.9 * 2 / 3, 0.1], rel=1e-6)
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["trainer"]["epochs"] == 4
    assert load_checkpoint(tmp_path / "r")["epoch"] == 4


def test_extending_a_search_with_constant_schedules_equals_the_longer_search(tmp_path):
    """With schedules that do not depend on the total (constant τ and LR), a 2-epoch search
    resumed for 2 more is the 4-epoch search, bit for bit."""
    const = ["estimator.name=softmax", "optim.weights.lr=0.05", "optim.weights.lr_min=0.05"]
    run_search(tiny("trainer.epochs=4", *const), tmp_path / "four", quiet=True)
    run_search(tiny("trainer.epochs=2", *const), tmp_path / "two", quiet=True)
    assert main(["--resume", str(tmp_path / "two"), "trainer.epochs=4", "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "four"), load_checkpoint(tmp_path / "two")
    assert_same(arch_state(a), arch_state(b), "arch")
    assert_same(a["model"], b["model"], "model")
    assert (tmp_path / "four" / "genotype.yaml").read_text() == (tmp_path / "two" / "genotype.yaml").read_text()


def test_replan_epochs_matches_a_scheduler_planned_for_the_new_total():
    def sched(T):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T, eta_min=0.002)
    short, long_ = sched(3), sched(7)
    for _ in range(3):
        short.optimizer.step(), short.step()
    replan_epochs(short, 7)
    for t in range(3):
        long_.optimizer.step(), long_.step()
    for t in range(3, 7):
        assert short.get_last_lr()[0] == pytest.approx(long_.get_last_lr()[0], rel=1e-12)
        short.optimizer.step(), short.step()
        long_.optimizer.step(), long_.step()
    assert short.get_last_lr()[0] == pytest.approx(0.002)


# ----------------------------------------------------------------------------- bad checkpoints

@pytest.fixture
def one_epoch_run(tmp_path):
    out = tmp_path / "run"
    run_search(tiny("trainer.epochs=1"), out, quiet=True)
    return out


def cli_error(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("nas-search: error: "), err
    return err


def test_mismatched_config_is_a_one_line_error(one_epoch_run, capsys):
    err = cli_error(capsys, "--resume", str(one_epoch_run), "estimator.name=gumbel")
    assert "estimator.name='softmax'" in err and "'gumbel'" in err
    cfg = yaml.safe_load((one_epoch_run / "config.yaml").read_text())
    cfg["space"]["C"] = 8  # the run folder's config edited by hand
    (one_epoch_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert "space.C=4" in cli_error(capsys, "--resume", str(one_epoch_run))
    with pytest.raises(CheckpointError, match="space.C"):
        run_search(tiny("trainer.epochs=1", "space.C=8"), one_epoch_run, resume=True, quiet=True)
    cfg["space"]["C"] = 4
    (one_epoch_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    ckpt = load_checkpoint(one_epoch_run)
    ckpt["epoch"] = 3  # trainer.epochs=0 is no config at all now (trainer.epochs >= 1)
    with pytest.raises(CheckpointError, match="epoch 3; trainer.epochs=1"):
        check_resume_config(tiny("trainer.epochs=1"), ckpt, one_epoch_run / "checkpoint.pt", RESUMABLE_CHANGES)


def test_corrupt_checkpoints_are_one_line_errors(one_epoch_run, capsys):
    path = one_epoch_run / "checkpoint.pt"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    assert "corrupt" in cli_error(capsys, "--resume", str(one_epoch_run))
    path.write_bytes(b"not a checkpoint at all")
    assert "corrupt" in cli_error(capsys, "--resume", str(one_epoch_run))
    torch.save([1, 2, 3], path)
    assert "not a nas checkpoint" in cli_error(capsys, "--resume", str(one_epoch_run))
    ckpt = torch.load(__import__("io").BytesIO(good), weights_only=False)
    ckpt["model"]["arch.cell.alpha"] = torch.zeros(2, 2)
    torch.save(ckpt, path)
    assert "does not match" in cli_error(capsys, "--resume", str(one_epoch_run))
    path.unlink()
    assert "not found" in cli_error(capsys, "--resume", str(one_epoch_run))
    assert "no such run folder" in cli_error(capsys, "--resume", str(one_epoch_run / "nowhere"))


def test_save_atomic_keeps_the_old_checkpoint_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"model": {"w": torch.arange(3)}, "epoch": 1, "config": {}}, path)
    with pytest.raises(Exception):
        save_atomic({"model": {}, "epoch": 2, "config": {}, "bad": lambda: 0}, path)  # unpicklable
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


# ----------------------------------------------------------------------------- SIGKILL

KILL_ARGS = ["trainer.epochs=6", "space.C=8", "space.N=1", "data.resize=16", "data.batch_size=32",
             "data.subset=500", "device=cpu", "estimator.name=gumbel_hard"]


def nas_search(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *args, "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes_like_an_uninterrupted_run(tmp_path):
    ref = nas_search(*KILL_ARGS, "--out", str(tmp_path / "ref"))
    out = tmp_path / "killed"
    proc = nas_search(*KILL_ARGS, "--out", str(out))
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, f"the search ended before its first checkpoint: {proc.communicate()}"
        assert time.time() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(out)["epoch"]
    assert 1 <= done < 6 and not (out / "metrics.json").exists(), "the kill came after the search ended"

    resumed = nas_search("--resume", str(out))
    r_out, r_err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, r_err
    assert "genotype: |" in r_out
    ref_out, ref_err = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_err

    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(out)
    assert a["epoch"] == b["epoch"] == 6
    assert_same(arch_state(a), arch_state(b), "arch")
    assert_same(a["model"], b["model"], "model")
    assert (tmp_path / "ref" / "genotype.yaml").read_text() == (out / "genotype.yaml").read_text()
    # TensorBoard: each epoch once, the interrupted session's extra epoch purged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    assert [e.step for e in ea.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert "resumed from" in (out / "log.txt").read_text()


def test_stale_temporary_files_of_a_killed_save_are_removed_on_resume(one_epoch_run):
    stale = one_epoch_run / "checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    run_search(tiny("trainer.epochs=2"), one_epoch_run, resume=True, quiet=True)
    assert not stale.exists() and load_checkpoint(one_epoch_run)["epoch"] == 2
