"""Helpers of the fault-injection tests (tests/test_faults_*.py): tiny runs in this process or in a
child process, the one-line-error assertion, and a run folder's state."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch.nn.functional as F
from torch import nn

import nas
from nas.cli import main

REPO = Path(__file__).resolve().parents[1]
# quickstart with C=4, 300 images and one epoch: a second or two
TINY = ["space.C=4", "data.subset=300", "trainer.epochs=1"]
RUN_FILES = {"checkpoint.pt", "config.yaml", "genotype.yaml", "log.txt", "metrics.json", "tb"}
# a candidate op that cannot take feature maps under 3x3, for a supernet that cannot take small
# images (the built-in ops and skeletons take any size: they halve odd sides)
NEEDS_3X3 = "space.ops=[test_needs_3x3]"


class _Needs3x3(nn.Module):
    def forward(self, x):
        return F.pad(F.avg_pool2d(x, 3, stride=1), (1, 1, 1, 1))  # a 3x3 window without padding


@nas.register_op("test_needs_3x3")
def _needs_3x3(C_in, C_out, stride, affine, **_):
    return _Needs3x3()


def one_line(capsys, code, expect_code=2, prog="nas-search"):
    """The single stderr line of a command that ended with ``expect_code``."""
    err = capsys.readouterr().err.strip()
    assert code == expect_code, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: ") and "Traceback" not in err, err
    return lines[0]


def search(*argv):
    return main([*argv, "--quiet"])


def files(folder: Path) -> dict:
    """``{name: bytes}`` of every file under ``folder`` (folders by their listing)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = p.read_bytes() if p.is_file() else None
    return out


def no_leftovers(folder: Path) -> None:
    """No temporary file of an atomic write and no lock once a run has ended."""
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if n.endswith(".tmp")], names
    assert ".lock" not in names, names


COMMANDS = {"search": "from nas.cli import main", "retrain": "from nas.commands.retrain import cli as main"}


def child(argv, prelude: str = "", cwd=REPO, env=None, command: str = "search") -> subprocess.Popen:
    """``nas-search ARGV --quiet`` (or ``nas-retrain``) in a child process; ``prelude`` (Python)
    runs first, e.g. to slow down or break something inside it."""
    code = textwrap.dedent(prelude) + f"\nimport sys\n{COMMANDS[command]}\nsys.exit(main(sys.argv[1:]))\n"
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen([sys.executable, "-c", code, *argv, "--quiet"], cwd=cwd, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the child ended (rc {proc.returncode}) before {what}: {err[-2000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def log_has(folder: Path, text: str) -> bool:
    try:
        return text in (folder / "log.txt").read_text()
    except OSError:
        return False
