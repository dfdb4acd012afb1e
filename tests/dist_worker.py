"""One rank of the data-parallel tests (tests/test_distributed.py), started by torchrun.

    torchrun ... tests/dist_worker.py '<json>'

The JSON holds ``runs``: searches (or retrains, ``"kind": "retrain"``) run one after the other in
the same process group, each ``{"out", "overrides", "resume"?, "stop_after"?}``. After each, every
rank saves what it holds (model, optimizers, estimator) to ``<out>/rank<r>.pt``, so that the test
can compare the ranks bit for bit. ``"float64": true`` runs everything in double precision. ``"kill_rank"``/``"kill_at_step"``: that rank SIGKILLs itself
at that weight step (counted over the whole run), as a crashed or preempted rank would.
"""
import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nas.retrainer.run as retrain_run  # noqa: E402
import nas.searcher.run as search_run  # noqa: E402
from nas.config import load_config  # noqa: E402
from nas.errors import NasError  # noqa: E402
from nas.retrainer.config import RetrainConfig  # noqa: E402

made = []
spec = json.loads(sys.argv[1])
rank = int(os.environ["RANK"])


class RecordingSearcher(search_run.Searcher):
    steps = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        made.append(self)

    def weight_step(self, x, y, update_arch=False):
        RecordingSearcher.steps += 1
        if spec.get("kill_rank") == rank and RecordingSearcher.steps == spec.get("kill_at_step"):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().weight_step(x, y, update_arch)


class RecordingTrainer(retrain_run.Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        made.append(self)


search_run.Searcher = RecordingSearcher
retrain_run.Trainer = RecordingTrainer

torch.set_num_threads(1)
if spec.get("float64"):
    torch.set_default_dtype(torch.float64)
for run in spec["runs"]:
    try:
        if run.get("kind") == "retrain":
            cfg = load_config(run.get("config"), run["overrides"], cls=RetrainConfig)
            result = retrain_run.run_retrain(cfg, Path(run["out"]), quiet=True, resume=run.get("resume", False))
        else:
            cfg = load_config(run.get("config"), run["overrides"])
            result = search_run.run_search(cfg, Path(run["out"]), quiet=True, resume=run.get("resume", False),
                                           stop_after=run.get("stop_after"))
    except NasError as e:
        print(f"worker [rank {rank}]: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    torch.save(made[-1].state_dict(), Path(run["out"]) / f"rank{rank}.pt")
    print(f"rank {rank} genotype {result.genotype}", flush=True)
