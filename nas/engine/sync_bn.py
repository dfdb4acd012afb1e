"""Synchronised BatchNorm for any backend (``trainer.sync_bn: true``): statistics over the global
batch of a data-parallel step, so that W ranks with B/W images each normalise exactly as one
process with B images (Ioffe & Szegedy 2015, eq. of Algorithm 1, over the union of the shards).

``torch.nn.SyncBatchNorm`` runs on GPUs only; this one runs wherever ``torch.distributed`` does
(gloo on CPU, nccl on CUDA), with one all-reduce per BN in the forward pass and one in the
backward pass. Each rank puts its count ``n_r``, mean ``m_r`` and sum of squared deviations
``M2_r`` (per channel) in its own row of a ``[W, 1 + 2C]`` table, the all-reduce fills the table,
and every rank combines the rows in the same order (Chan et al. 1979):

    N = Σ n_r,   μ = Σ n_r·m_r / N,   σ² = Σ (M2_r + n_r·(m_r - μ)²) / N

which has no ``E[x²] - E[x]²`` cancellation. The table's all-reduce is differentiable (its
backward all-reduces the gradient), so autograd gives the exact gradient of the global-batch
normalisation, which the averaging of the weight gradients then completes. Running statistics
follow ``nn.BatchNorm2d`` (unbiased σ² · N/(N-1); ``momentum=None``: cumulative average). In eval
mode, or in a single process, it is ``nn.BatchNorm2d`` itself; the state-dict keys are the same,
so checkpoints move freely between runs with and without ``sync_bn``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .distributed import World


class _AllReduceSum(torch.autograd.Function):
    """``y = Σ_r x_r`` on every rank; ``∂L/∂x_r = Σ_r' ∂L_r'/∂y`` (the loss is the ranks' sum)."""

    @staticmethod
    def forward(ctx, x: Tensor, world: World) -> Tensor:  # type: ignore[override]
        ctx.world = world
        return world.all_reduce(x.clone(), "sync_bn statistics all-reduce")

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        return ctx.world.all_reduce(g.contiguous().clone(), "sync_bn gradient all-reduce"), None


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the union of the ranks' batches in training mode (see the module docstring)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = True, world: Optional[World] = None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.world = world or World()

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.world.enabled):
            return super().forward(x)
        self._check_input_dim(x)
        C, W, r = x.shape[1], self.world.size, self.world.rank
        dims = [0] + list(range(2, x.dim()))
        shape = [1, C] + [1] * (x.dim() - 2)
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()  # statistics in float32 at least
        n = x.numel() // C
        if n > 0:
            mean_r = xf.mean(dims)
            m2_r = (xf - mean_r.view(shape)).square().sum(dims)
        else:  # an empty shard adds nothing
            mean_r = m2_r = xf.new_zeros(C)
        row = torch.cat([xf.new_tensor([float(n)]), mean_r, m2_r])
        table = torch.stack([row if k == r else torch.zeros_like(row) for k in range(W)])   # [W, 1 + 2C]
        table = _AllReduceSum.apply(table, self.world)
        ns, means, m2s = table[:, :1], table[:, 1:C + 1], table[:, C + 1:]
        N = ns.sum()  # a tensor: reading it would stall an accelerator at every BN
        mean = (ns * means).sum(0) / N
        var = (m2s + ns * (means - mean).square()).sum(0) / N
        if self.track_running_stats and self.num_batches_tracked is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (N / (N - 1).clamp_min(1)), alpha=f)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_bn(module: nn.Module, world: World) -> nn.Module:
    """``module`` with every BatchNorm replaced by a :class:`SyncBatchNorm` that keeps its
    parameters (the same ``nn.Parameter`` objects) and buffers."""
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, world)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_bn(child, world))
    return out


__all__ = ["SyncBatchNorm", "convert_sync_bn"]
