"""Data parallelism over ``torch.distributed`` (started by ``torchrun``): one process per device,
every process holding the whole model, optimizers and estimator, identical on every rank after
every step.

What keeps the ranks identical, and equal to one process with the global batch:

* the data loaders draw each epoch's order and augmentation for the *global* batch from their own
  generators, seeded alike on every rank, and each rank takes its contiguous slice
  (:func:`nas.data.loader.shard_bounds`);
* every gradient (weights, α, Bop's momentum input, σ, the second-order hypergradient, penalties)
  is that of the global batch's mean loss: each rank backpropagates ``n_r·L_r`` (its batch size
  times its mean loss) and the all-reduce divides the sum by ``Σ_r n_r`` (:meth:`World.average`),
  one all-reduce per step and kind;
* torch's global generator is the *architecture* RNG: seeded alike and synchronised from rank 0
  at the start and on resume, and drawn from only by the estimators (Gumbel, Dirichlet, noise,
  hard-concrete gates), whose draws have the shape of α, not of the batch — so every rank samples
  the same sub-network at every step. :meth:`World.check_same` verifies it once per epoch.

No DDP wrapper: the architecture step takes gradients with ``torch.autograd.grad`` (no hooks
fire), the unrolled second-order step averages three intermediate gradients, single-path
estimators leave parameters without gradient, and the last batch of an epoch may split unevenly;
an explicit all-reduce after each backward covers all of them with the single-process math.

Rank 0 alone writes the run folder; the others receive what it reads (:meth:`World.on_main`).
A collective that fails because a peer died or outlived ``trainer.dist_timeout`` raises a one-line
:class:`DistributedError` instead of hanging.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import signal
import sys
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import ConfigError, NasError
from .runtime import resolve_device, rng_state, set_rng_state

if TYPE_CHECKING:
    from .meter import Meter

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 1800.0  # torch's own default for gloo and nccl
# config keys that may differ between ranks: where each machine keeps the data, its device
LOCAL_KEYS = ("device", "data.root", "data.download", "data.workers")


class DistributedError(NasError):
    """A rank stopped, hung past the timeout, or the ranks disagree."""


def _first_line(e: BaseException) -> str:
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip())  # gloo's "[.../pair.cc:545] " source prefix
    return text.splitlines()[0].split(". ")[0][:120] if text else type(e).__name__


@dataclass
class World:
    """This process's place among the data-parallel ranks (``size == 1``: a plain process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    node: str = "0"                      # which machine (torchrun's GROUP_RANK)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> Tuple[int, int]:
        return self.rank, self.size

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.size}"

    # ---------------------------------------------------------------- collectives
    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except NasError:
            raise
        except (RuntimeError, ValueError, OSError) as e:  # gloo/nccl errors are RuntimeErrors
            raise DistributedError(
                f"{self}: {what} failed ({_first_line(e)}); another rank stopped or was killed (see its "
                f"own message), or did not answer within trainer.dist_timeout") from None

    def barrier(self, what: str = "barrier") -> None:
        if self.enabled:
            with self._collective(what):
                dist.barrier()

    def broadcast(self, obj: T, what: str = "broadcast") -> T:
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        with self._collective(what):
            dist.broadcast_object_list(box, src=0, device=self._object_device())
        return box[0]

    def gather(self, obj: Any, what: str = "all-gather") -> List[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: List[Any] = [None] * self.size
        with self._collective(what):
            dist.all_gather_object(out, obj)
        return out

    def all_reduce(self, t: Tensor, what: str = "all-reduce") -> Tensor:
        """The sum of ``t`` over the ranks, in place."""
        if self.enabled:
            with self._collective(what):
                dist.all_reduce(t)
        return t

    def reduce_meter(self, meter: "Meter") -> "Meter":
        """``meter`` summed over the ranks (every rank must call it)."""
        if not self.enabled:
            return meter
        return meter.all_reduce_(lambda t: t.copy_(self.all_reduce(t.to(self.device), "metrics all-reduce")))

    def _object_device(self) -> Optional[torch.device]:
        return self.device if dist.get_backend() == "nccl" else None

    # ---------------------------------------------------------------- agreement
    def on_main(self, fn: Callable[[], T], what: str = "rank 0's preparation") -> T:
        """``fn()`` on rank 0 only; its result (or its :class:`NasError`) on every rank."""
        if not self.enabled:
            return fn()
        outcome: Any = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except NasError as e:
                outcome = ("error", type(e), str(e))
            except BaseException as e:
                self.broadcast(("error", DistributedError, f"rank 0 failed: {_first_line(e)}"), what)
                raise
        outcome = self.broadcast(outcome, what)
        if outcome[0] == "error":
            raise outcome[1](outcome[2])
        return outcome[1]

    def agree(self, error: Optional[NasError], what: str) -> None:
        """Raise on every rank the first rank's error (None: no error on this rank)."""
        if not self.enabled:
            if error is not None:
                raise error
            return
        # one small all-reduce says whether any rank failed; the messages travel only then
        if not self.all_reduce(torch.tensor([float(error is not None)], device=self.device), what).item():
            return
        errors = self.gather(None if error is None else (type(error), str(error)), what)
        for r, e in enumerate(errors):
            if e is not None:
                raise e[0](e[1] if r == self.rank else f"(rank {r}) {e[1]}")

    def check_same(self, tensors: Sequence[Tensor], what: str) -> None:
        """A :class:`DistributedError` unless ``tensors`` and torch's global RNG state are bitwise
        equal on every rank (one small all-gather of digests)."""
        if not self.enabled:
            return
        h = hashlib.sha1()
        for t in tensors:
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        h.update(torch.get_rng_state().numpy().tobytes())
        digests = self.gather(h.hexdigest(), f"checking {what}")
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistributedError(f"the ranks disagree on {what} (rank(s) {odd} differ from rank 0): something "
                                   f"draws per-rank randomness outside the data loaders; report it with the config")

    def check_config(self, flat: Dict[str, Any], local: Sequence[str] = LOCAL_KEYS) -> None:
        """A :class:`DistributedError` naming the first key (in sorted order) whose value differs
        from rank 0's, unless every rank runs the same resolved config (``flat``: its flattened
        dict; the ``local`` keys may differ per machine) and the same code (:func:`code_version`).
        One all-gather of digests; the configs travel only when they differ."""
        if not self.enabled:
            return
        import json
        mine = {k: v for k, v in flat.items() if k not in local}
        mine["the nas code"] = code_version()
        digest = hashlib.sha1(json.dumps(mine, sort_keys=True, default=repr).encode()).hexdigest()
        if len(set(self.gather(digest, "comparing the ranks' configs"))) == 1:
            return
        configs = self.gather(mine, "comparing the ranks' configs")
        r = next(r for r, c in enumerate(configs) if c != configs[0])
        key = next(k for k in sorted(set(configs[0]) | set(configs[r])) if configs[0].get(k) != configs[r].get(k))
        raise DistributedError(f"rank {r} runs another config than rank 0: {key}={configs[r].get(key)!r} there, "
                               f"{configs[0].get(key)!r} on rank 0; start every rank with the same config, overrides "
                               f"and nas version")

    def sync_rng(self) -> None:
        """Every rank continues rank 0's global RNG streams (the architecture RNG)."""
        if self.enabled:
            set_rng_state(self.broadcast(rng_state(self.device), "sharing the RNG state"), self.device)

    def sync_module(self, module: torch.nn.Module, buffers_only: bool = False) -> None:
        """Rank 0's parameters and buffers (or only its buffers) on every rank."""
        if not self.enabled:
            return
        tensors = list(module.buffers()) + ([] if buffers_only else list(module.parameters()))
        with self._collective("sharing the model"), torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    # ---------------------------------------------------------------- gradients
    def average(self, params: Sequence[Tensor], grads: Sequence[Optional[Tensor]], n: int,
                what: str = "gradient all-reduce") -> List[Optional[Tensor]]:
        """``Σ_r g_r / Σ_r n_r`` per parameter, identical on every rank, for gradients ``g_r`` of
        ``n_r·L_r`` (``n``: this rank's batch size, ``L_r`` its mean loss): the gradient of the
        global batch's mean loss. A gradient that is None on every rank (a parameter off the
        sampled path) stays None; None on some ranks only means the ranks ran different paths."""
        if not self.enabled:
            return list(grads)
        dtype = params[0].dtype if params else torch.float32
        parts = [g.detach().reshape(-1).to(dtype) if g is not None
                 else torch.zeros(p.numel(), dtype=dtype, device=self.device) for p, g in zip(params, grads)]
        tail = torch.tensor([float(n)] + [float(g is not None) for g in grads], dtype=dtype, device=self.device)
        flat = torch.cat(parts + [tail]) if parts else tail
        self.all_reduce(flat, what)
        k = len(params)
        total, present = flat[-k - 1], flat[len(flat) - k:].tolist()
        if any(0 < c < self.size for c in present):
            raise DistributedError("the ranks computed gradients for different parameters (different sampled "
                                   "paths): something draws per-rank randomness outside the data loaders")
        out: List[Optional[Tensor]] = []
        offset = 0
        for p, g, c in zip(params, grads, present):
            seg = flat[offset:offset + p.numel()]
            offset += p.numel()
            out.append(None if c == 0 else (seg / total).view_as(p).to(p.dtype))
        return out

    def average_grads_(self, params: Sequence[Tensor], n: int, what: str = "gradient all-reduce") -> None:
        """:meth:`average` on ``.grad`` of ``params``, in place."""
        if self.enabled:
            for p, g in zip(params, self.average(params, [p.grad for p in params], n, what)):
                p.grad = g

    # ---------------------------------------------------------------- data
    def node_shared(self, build: Callable[[], T], key: str) -> T:
        """``build()`` once per machine (local rank 0); the other ranks of the machine map its
        tensors from one file in shared memory instead of building (decoding) their own copy, so
        a machine holds one copy of an in-memory data set, whatever its number of ranks."""
        if not self.enabled:
            return build()
        tag = self.broadcast(uuid.uuid4().hex[:12], "naming the shared data")
        path = _shm_dir() / f"nas-{tag}-{self.node}-{key}.pt"
        error: Optional[NasError] = None
        if self.local_rank == 0:
            try:
                obj = build()
                torch.save(obj, path)
                del obj
            except NasError as e:
                error = e
            except OSError as e:
                error = NasError(f"cannot write the shared data file {path} ({_first_line(e)}); free space in "
                                 f"{path.parent} or set TMPDIR")
        self.agree(error, "loading the data")
        try:
            return torch.load(path, mmap=True, weights_only=False)  # pages shared, never copied
        finally:
            self.barrier("sharing the data")
            if self.local_rank == 0:
                path.unlink(missing_ok=True)  # the mappings outlive the name


def code_version() -> str:
    """``nas.__version__`` and a digest of the package's source files: ranks that run different
    checkouts of one version differ too."""
    from ..version import __version__
    root = Path(__file__).resolve().parents[1]  # the package's folder (not `import nas`: a layer above)
    h = hashlib.sha1()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return f"{__version__} ({h.hexdigest()[:12]})"


def _shm_dir() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def rank_tag() -> str:
    """`` [rank r/W]`` under torchrun (for messages every rank prints), else ``""``."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return f" [rank {os.environ.get('RANK', '0')}/{size}]" if size > 1 else ""


def is_main_process() -> bool:
    """Rank 0, or not launched by torchrun: the process that prints results."""
    return os.environ.get("RANK", "0") == "0"


def launched() -> bool:
    """True under torchrun with more than one process (or in an initialised process group)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or (dist.is_available() and dist.is_initialized())


def setup(device_name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """The :class:`World` of this process: from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``, ``GROUP_RANK``), joining the process group if
    nobody has (gloo on CPU, nccl on CUDA; rank ``r`` uses GPU ``LOCAL_RANK``), or a plain
    single-process world."""
    if timeout_s <= 0:
        raise ConfigError(f"trainer.dist_timeout must be a positive number of seconds, got {timeout_s}")
    device = resolve_device(device_name)
    if not launched():
        return World(device=device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError, OSError) as e:
            raise DistributedError(f"cannot join the process group ({_first_line(e)}); start every process with "
                                   f"torchrun (see docs/parallel.md)") from None
        atexit.register(_leave)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _stopped)
    rank = dist.get_rank()
    # without torchrun's LOCAL_RANK nothing says which ranks share a machine: each is its own
    node = os.environ.get("GROUP_RANK", "0") if "LOCAL_RANK" in os.environ else f"r{rank}"
    return World(rank=rank, size=dist.get_world_size(), local_rank=local if "LOCAL_RANK" in os.environ else 0,
                 node=node, device=device)


def _stopped(signum: int, frame: Any) -> None:
    # torchrun sends SIGTERM to every rank once one has failed: say so instead of dying silently.
    # A rank already failing (its collective saw the dead peer first) is left to finish its own
    # message: raising here would replace it, and the note of what checkpoint is kept with it.
    if sys.exc_info()[1] is not None:
        return
    raise DistributedError(f"rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}: stopped by "
                           f"SIGTERM (torchrun sends it to every rank when one fails, then see that rank's message, or when it "
                           f"is stopped itself)")


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
