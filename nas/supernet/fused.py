"""Fused execution of a cell's mixed edges, node by node: the same values and gradients as running
every :class:`~nas.supernet.mixed.MixedOp` on its own, with fewer and larger kernels.

A cell is a DAG whose node ``j`` sums its incoming edges, each a mixed op over the same
candidates: ``x_j = Σ_{i<j} (Σ_k w_ijk·o_k(x_i) [+ r_ij]) [·s_ij] [+ β·x_i]`` (DARTS, Liu et al.
2019, eq. 2; ``r_ij`` the GDAS single-path rest ``Σ_{k≠k*} w_ijk``, zero in value; ``s_ij`` an edge
scale: L0 edge gates, PC-DARTS edge normalisation; ``β`` the DARTS- auxiliary skip). Every edge
leaving node ``i`` reads the same ``x_i``, so:

* **convolutions** (``group_convs``, by default off the CPU only) — the ``ReLU → Conv → BN``
  candidates of all out-edges of a node that have the same conv shape run as one convolution of
  ``relu(x_i)`` with their output channels concatenated;
  per-channel BN is unchanged by the concatenation, so one BN over the concatenated channels gives
  each edge its own statistics (running statistics are written back to each op's BN);
* **weights folded into BN** — ``w·BN(z) = BN(z; γ=w·γ₀, β=w·β₀)``, so the mixing weight becomes
  the BN's per-channel scale: no separate multiply in forward, and ``∂L/∂w = Σ_c ∂L/∂γ_c``, which
  BN's backward computes anyway, instead of a dot product over the op's output;
* **pooling** (parameter free) runs once per node, not once per edge; the identity costs nothing;
* **one sum per node** (:class:`_NodeSum`) takes every term of the node at once: forward writes
  the node in one pass, backward hands ``g`` itself to the terms already scaled and computes
  ``<g, t>`` only for the terms with a scalar weight (skip, pooling, other ops);
* in the single-path step (``index`` given) only the selected ops run, grouped the same way.

``none`` (``is_zero``) has no term: its output and the gradient to its weight, ``<g, 0>``, are zero.
Ops the fusion does not know (any other module) run per edge as a weighted term, so a space with
user ops stays correct. The equality to the per-edge path is tested in float64
(``tests/test_fused.py``); ``fused=False`` on a supernet turns this path off.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.common import Identity, Pool, ReLUConvBN
from .partial import shuffle_cat

ZERO, SKIP, CONV, POOL, OTHER = "zero", "skip", "conv", "pool", "other"


def classify(op: nn.Module) -> Tuple[str, object]:
    """``(kind, key)`` of a candidate op; ops with equal ``(kind, key)`` on the out-edges of one
    node share one kernel (CONV) or one output (POOL)."""
    if getattr(op, "is_zero", False):
        return ZERO, None
    if type(op) in (Identity, nn.Identity):
        return SKIP, None
    if type(op) is ReLUConvBN:
        conv, bn = op[1], op[2]
        if (type(conv) is nn.Conv2d and conv.groups == 1 and conv.bias is None and conv.padding_mode == "zeros"
                and type(bn) is nn.BatchNorm2d):
            return CONV, (conv.in_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                          bn.eps, bn.affine, bn.track_running_stats)
    if type(op) is Pool and op.pre is None and op.bn is None:
        p = op.pool
        if (type(p) is nn.AvgPool2d and (p.kernel_size, p.stride, p.padding) in ((3, 1, 1), ((3, 3), (1, 1), (1, 1)))
                and not p.count_include_pad and not p.ceil_mode and p.divisor_override is None):
            return POOL, AVG3  # NAS-Bench-201's avg_pool_3x3
        return POOL, repr(p)  # the repr names every argument of the pooling
    return OTHER, None


AVG3 = "avg3x3"


def avg_pool_3x3(x: Tensor) -> Tensor:
    """``AvgPool2d(3, 1, 1, count_include_pad=False)`` as a depthwise 3x3 convolution with ones
    and a per-pixel ``1/count`` (9 inside, 6 on a border, 4 in a corner): the same linear map,
    about twice as fast forward and backward on NHWC CPU tensors as the pooling kernel."""
    C, (H, W) = x.shape[1], x.shape[2:]
    ones, inv_count = _pool_constants(C, H, W, x)
    return F.conv2d(x, ones, None, 1, 1, 1, C) * inv_count


_POOL_CONSTANTS: Dict[tuple, Tuple[Tensor, Tensor]] = {}


def _pool_constants(C: int, H: int, W: int, x: Tensor) -> Tuple[Tensor, Tensor]:
    """The ones kernel and ``1/count`` of :func:`avg_pool_3x3`, built once per shape, dtype and
    device (constants, never written to: each search step would otherwise build them anew)."""
    key = (C, H, W, x.dtype, x.device)
    got = _POOL_CONSTANTS.get(key)
    if got is None or torch.compiler.is_compiling():
        ones = x.new_ones(C, 1, 3, 3)
        got = ones, F.conv2d(x.new_ones(1, 1, H, W), ones[:1], padding=1).reciprocal()
        if _keepable() and len(_POOL_CONSTANTS) < 64:
            _POOL_CONSTANTS[key] = got
    return got


def _keepable() -> bool:
    """Whether a tensor built now may be kept for later calls: not while tracing for
    ``torch.compile``, nor under ``torch.inference_mode`` (an inference tensor cannot be saved for
    a later backward)."""
    return not torch.compiler.is_compiling() and not torch.is_inference_mode_enabled()


def _flat(t: Tensor) -> Optional[Tensor]:
    """``t`` as a 1-D view in memory order, or ``None`` when it is not densely laid out."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)  # a view: NHWC is this tensor's memory order
    return None


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``<a, b>`` over all elements, as one dot product when both have the same dense layout."""
    if a.dtype != b.dtype:  # autocast: a bf16/fp16 term against a float32 gradient
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    if a.stride() == b.stride():
        fa, fb = _flat(a), _flat(b)
        if fa is not None and fb is not None:
            return torch.dot(fa, fb)
    return (a * b).sum()


class _NodeSum(torch.autograd.Function):
    """``out = Σ_{m<P} t_m + Σ_{m≥P} c_{m-P}·t_m + b``: the plain terms ``t_0..t_{P-1}`` arrive
    already scaled (BN-folded convolutions), the others carry a scalar weight ``c``; ``b`` is the
    single-path rest (or ``None``). Backward: ``∂L/∂t_m = g`` (plain) or ``c·g``, ``∂L/∂c_m = <g, t_m>``,
    ``∂L/∂b = Σ g``; only the weighted terms are kept for backward."""

    @staticmethod
    def forward(ctx, coef: Optional[Tensor], bias: Optional[Tensor], n_plain: int, *ts: Tensor) -> Tensor:
        plain, weighted = ts[:n_plain], ts[n_plain:]
        ctx.n_plain = n_plain
        ctx.has_bias = bias is not None
        ctx.save_for_backward(coef, *weighted)
        # On CPU (where reading a value costs no device synchronisation) two passes over memory are
        # saved in the single-path step: its rest is zero in value (a straight-through one-hot), so
        # only its gradient Σg matters, and the selected op's weight is exactly 1, an addition
        check = ts[0].device.type == "cpu" and not torch.compiler.is_compiling()
        if check and bias is not None and not bool(bias):
            bias = None
        ones = (coef == 1).tolist() if check and coef is not None else [False] * len(weighted)
        ctx.ones = ones  # backward hands these terms g itself
        terms = [(t, None) for t in plain] + [(t, None if one else coef[m])
                                              for m, (t, one) in enumerate(zip(weighted, ones))]
        dtype = ts[0].dtype
        for t in ts[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        # the first kernel writes the output from two terms (or a term and the bias)
        (t0, c0), rest = terms[0], terms[1:]
        if bias is not None:
            out = torch.add(t0, bias) if c0 is None else torch.addcmul(bias, t0, c0)
        elif rest:
            (t1, c1), rest = rest[0], rest[1:]
            if c0 is None and c1 is None:
                out = torch.add(t0, t1)
            elif c0 is None or c1 is None:
                (a, _), (b, cb) = ((t0, c0), (t1, c1)) if c0 is None else ((t1, c1), (t0, c0))
                out = torch.addcmul(a, b, cb)
            else:  # (not in place yet: under autocast t0 may be the narrower type)
                out, rest = t0 * c0, [(t1, c1)] + rest
        else:
            out = t0.clone() if c0 is None else t0 * c0
        if out.dtype != dtype:  # autocast mixes half and float32 terms: accumulate in the wider
            out = out.to(dtype)
        for t, c in rest:
            if c is None:
                out.add_(t)
            else:
                out.addcmul_(t, c)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        coef, *weighted = ctx.saved_tensors
        need = ctx.needs_input_grad
        gc = None
        if need[0]:
            gc = torch.stack([_dot(g, t).to(coef.dtype) for t in weighted])
        gb = g.sum() if ctx.has_bias and need[1] else None
        n = ctx.n_plain
        gts = [g if need[3 + m] else None for m in range(n)]
        # a weight of exactly 1 (GDAS's selected op) scales nothing: g itself is then the exact
        # gradient, and a pass over memory is saved (``ctx.ones``, read in forward on CPU only)
        gts += [(g if ctx.ones[m] else g * coef[m]) if need[3 + n + m] else None for m in range(len(weighted))]
        return (gc, gb, None, *gts)


def _bn_update(bns: Sequence[nn.BatchNorm2d], batch_mean: Tensor, batch_var: Tensor) -> None:
    """Each BN's running-statistics update as ``nn.BatchNorm2d`` makes it (``momentum=None``: the
    cumulative average), from the batch statistics of its channels."""
    if len(bns) == 1 and bns[0].momentum is not None:  # an ungrouped conv (the CPU): no lists, no split
        bn = bns[0]
        bn.num_batches_tracked.add_(1)
        bn.running_mean.lerp_(batch_mean, bn.momentum)
        bn.running_var.lerp_(batch_var, bn.momentum)
        return
    C = bns[0].num_features
    means, variances = batch_mean.split(C), batch_var.split(C)
    torch._foreach_add_([bn.num_batches_tracked for bn in bns], 1)
    momenta = {bn.momentum for bn in bns}
    if len(momenta) == 1 and None not in momenta:  # the usual case, as a few list ops
        f = momenta.pop()
        torch._foreach_lerp_([bn.running_mean for bn in bns], means, f)
        torch._foreach_lerp_([bn.running_var for bn in bns], variances, f)
        return
    for bn, m, v in zip(bns, means, variances):
        f = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        bn.running_mean.lerp_(m, f)
        bn.running_var.lerp_(v, f)


def conv_group(r: Tensor, ops: Sequence[ReLUConvBN], scale: Tensor) -> Tuple[Tensor, ...]:
    """``scale[n]·op_n(x)`` for the ``ReLU → Conv → BN`` ops ``op_n`` of equal conv shape, from
    ``r = relu(x)``: one convolution, one BN with the scales folded into its affine parameters."""
    convs, bns = [op[1] for op in ops], [op[2] for op in ops]
    c0, b0 = convs[0], bns[0]
    weight = torch.cat([c.weight for c in convs]) if len(convs) > 1 else c0.weight
    z = F.conv2d(r, weight, None, c0.stride, c0.padding, c0.dilation)
    C = b0.num_features
    stats = torch.promote_types(z.dtype, torch.float32)  # under autocast BN keeps float32 parameters
    gamma = scale.repeat_interleave(C).to(stats)
    beta = None
    if b0.affine:
        beta = gamma * torch.cat([b.bias for b in bns]).to(stats)
        gamma = gamma * torch.cat([b.weight for b in bns]).to(stats)
    update = b0.training and b0.track_running_stats
    if b0.training or not b0.track_running_stats:
        # batch statistics; with momentum 1 the scratch buffers receive exactly this batch's mean
        # and unbiased variance, which each BN then blends with its own momentum
        rm = z.new_zeros(z.shape[1], dtype=stats) if update else None
        rv = z.new_ones(z.shape[1], dtype=stats) if update else None
        y = F.batch_norm(z, rm, rv, gamma, beta, True, 1.0, b0.eps)
        if update:
            with torch.no_grad():
                _bn_update(bns, rm, rv)
    else:
        rm = torch.cat([b.running_mean for b in bns])
        rv = torch.cat([b.running_var for b in bns])
        y = F.batch_norm(z, rm, rv, gamma, beta, False, 0.0, b0.eps)
    return y.split(C, dim=1) if len(ops) > 1 else (y,)


class Plan:
    """Per candidate ``k`` of every edge: its kind and fusion key (static for a cell; holds no
    module, so a deep copy or ``.to()`` of the cell leaves it valid). A cell keeps its plan in
    ``_plan``; whatever changes its ops' shapes (widening) calls :func:`invalidate_plans`."""

    def __init__(self, mixed: Sequence[nn.Module]):
        self.kinds = [[classify(op) for op in m.ops] for m in mixed]
        self.K = len(self.kinds[0])
        self._index: Dict[Tuple[torch.device, Tuple[int, ...]], Tensor] = {}

    def index(self, positions: Sequence[int], device: torch.device) -> Tensor:
        """``torch.tensor(positions)`` on ``device``, kept: the cell gathers the same positions of
        its weights at every step (a new index tensor costs more than the gather at C=16)."""
        key = (device, tuple(positions))
        t = self._index.get(key)
        if t is None or torch.compiler.is_compiling():
            t = torch.tensor(key[1], device=device)
            if _keepable() and len(self._index) < 4096:  # single path: one per sample
                self._index[key] = t
        return t


def invalidate_plans(model: nn.Module) -> None:
    """Drop the :class:`Plan` every module of ``model`` caches in ``_plan``: the next forward
    classifies the ops again (after their channel counts changed)."""
    for m in model.modules():
        if getattr(m, "_plan", None) is not None:
            m._plan = None


def run_cell(nodes: List[Tensor], edges: Sequence[Tuple[int, int]], mixed: Sequence[nn.Module],
             weights: Tensor, index: Optional[Sequence[int]] = None, edge_scale: Optional[Tensor] = None,
             aux_skip: float = 0.0, plan: Optional[Plan] = None,
             group_convs: Optional[bool] = None, active: Optional[Sequence[Sequence[bool]]] = None) -> List[Tensor]:
    """Compute the nodes of a cell: ``nodes`` holds its input nodes; edge ``e = (i, j)`` (``j``
    the later node) is the mixed op ``mixed[e]`` with weights ``weights[e]`` (``[E, K]``), single
    path on candidate ``index[e]`` when ``index`` is given. ``edge_scale`` (``[E]``) multiplies
    each edge's mixed output, ``aux_skip`` adds ``β·x_i`` to each edge. Returns every node,
    inputs first.

    ``group_convs``: run the same-shaped convolutions of a node's out-edges as one (``None``: on
    every device but the CPU). On this project's 2-core CPU the grouped convolution, its split and
    its gradient's concatenation cost more than the kernels they save (docs/results/speed.md:
    the single-path step 6.5% slower at 2 threads, the dense step no faster), so there each conv
    runs alone; BN folding, pooling once per node and the node sums are kept either way.

    ``active`` (``[E][K]`` bool, a masked choice's :attr:`~nas.estimators.base.Sample.active`):
    the candidates left out have weight exactly 0 and no gradient, so they do not run.

    Partial channels (:class:`~nas.supernet.partial.PartialMixedOp`, stride 1): shuffle and
    concatenation are permutations, so node ``j`` is ``shuffle(cat[A_j, B_j])`` with ``A_j`` the
    node sum of the ops on the first ``C/K`` channels and ``B_j = Σ_i s_ij·x_i[C/K:]`` that of the
    bypassed channels: one shuffle per node instead of one per edge."""
    plan = plan or Plan(mixed)
    if group_convs is None:
        group_convs = nodes[0].device.type != "cpu"
    K = plan.K  # candidates per edge
    groups = getattr(mixed[0], "K", 1)  # PC-DARTS: the mixed ops see 1/groups of the channels
    if edge_scale is not None:
        # (Σ_k w_k·o_k + r)·s = Σ_k (s·w_k)·o_k + r(s·w): the scale joins the weights
        weights = weights * edge_scale.unsqueeze(1).to(weights.dtype)
    wflat = weights.reshape(-1)
    n_nodes = max(j for _, j in edges) + 1
    out_edges: Dict[int, List[Tuple[int, int]]] = {}
    for e, (i, j) in enumerate(edges):
        out_edges.setdefault(i, []).append((e, j))
    # per target node: terms already scaled; terms with a scalar weight, as (tensor, index into
    # wflat or -1, constant added to the weight); the edges whose single-path rest it adds
    plain: Dict[int, List[Tensor]] = {j: [] for j in range(n_nodes)}
    weighted: Dict[int, List[Tuple[Tensor, int, float]]] = {j: [] for j in range(n_nodes)}
    rest_edges: Dict[int, List[int]] = {j: [] for j in range(n_nodes)}
    bypass: Dict[int, List[Tuple[Tensor, int]]] = {j: [] for j in range(n_nodes)}
    # with partial channels the auxiliary skip adds β·x_i after the shuffle, outside A_j and B_j
    aux_after: Dict[int, List[Tensor]] = {j: [] for j in range(n_nodes)}
    zeros: Dict[int, Tuple[int, int, Tensor]] = {}  # a `none` candidate into j, if j gets no term
    rest = None
    if index is not None:  # GDAS: r = Σ_{k≠k*} w_k, zero in value but not in gradient
        sel = torch.tensor(list(index), device=weights.device).unsqueeze(1)
        rest = weights.sum(1) - weights.gather(1, sel).squeeze(1)
    # without a gradient to w, a candidate weighted exactly 0 contributes nothing: it need not run
    # (with one, it must: ∂L/∂w_k = <g, o_k(x)> is not zero)
    zero_w = (weights == 0).tolist() if not weights.requires_grad else None

    out = list(nodes)
    for i in range(n_nodes):
        if i >= len(out):
            if not plain[i] and not weighted[i]:  # every incoming candidate is `none`
                e, k, x = zeros[i]
                plain[i].append(mixed[e].ops[k](x))
            node = _sum_node(plain[i], weighted[i], rest, rest_edges[i], wflat, plan)
            if groups > 1:
                node = shuffle_cat(node, _bypass_sum(bypass[i], edge_scale), groups)
                if aux_after[i]:
                    coef = torch.full((len(aux_after[i]),), aux_skip, dtype=node.dtype, device=node.device)
                    node = _NodeSum.apply(coef, None, 1, node, *aux_after[i])
            out.append(node)
        if i not in out_edges:
            continue
        x = out[i]
        if groups > 1:
            c = x.shape[1] // groups
            x_full, x, x_rest = x, x[:, :c], x[:, c:]
        shared: Dict[str, Tensor] = {}
        convs: Dict[object, List[Tuple[int, int, int]]] = {}
        pools: Dict[object, Tensor] = {}
        for e, j in out_edges[i]:
            aux = aux_skip
            rest_edges[j].append(e)
            if groups > 1:
                bypass[j].append((x_rest, e))
                if aux:
                    aux_after[j].append(x_full)
                aux = 0.0
            for k in ([index[e]] if index is not None else range(K)):
                kind, key = plan.kinds[e][k]
                if active is not None and not active[e][k] and kind != ZERO:
                    continue
                if kind == ZERO or (zero_w is not None and zero_w[e][k]):
                    zeros.setdefault(j, (e, k, x))
                elif kind == CONV:
                    convs.setdefault(key if group_convs else (e, k), []).append((e, k, j))
                elif kind == SKIP:
                    # the auxiliary skip joins the skip candidate's weight: (w + β)·x
                    weighted[j].append((x, e * K + k, aux))
                    aux = 0.0
                elif kind == POOL:
                    if key not in pools:
                        # (not under autocast, which would run the pooling as a half-precision conv)
                        nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                        dw = key == AVG3 and nhwc and not torch.is_autocast_enabled(x.device.type)
                        pools[key] = avg_pool_3x3(x) if dw else mixed[e].ops[k](x)
                    weighted[j].append((pools[key], e * K + k, 0.0))
                else:
                    weighted[j].append((mixed[e]._run(k, x, shared), e * K + k, 0.0))
            if aux:
                weighted[j].append((x, -1, aux))
        if convs:
            if "relu" not in shared:
                shared["relu"] = F.relu(x)
            for members in convs.values():
                idx = plan.index([e * K + k for e, k, _ in members], wflat.device)
                ys = conv_group(shared["relu"], [mixed[e].ops[k] for e, k, _ in members], wflat[idx])
                for (_, _, j), y in zip(members, ys):
                    plain[j].append(y)
    return out


def _bypass_sum(terms: List[Tuple[Tensor, int]], edge_scale: Optional[Tensor]) -> Tensor:
    """``Σ_e s_e·x_rest`` over a node's incoming edges ``e`` (a plain sum without edge scales)."""
    ts = [t for t, _ in terms]
    if edge_scale is None:
        return _NodeSum.apply(None, None, len(ts), *ts)
    coef = edge_scale[torch.tensor([e for _, e in terms], device=edge_scale.device)].to(ts[0].dtype)
    return _NodeSum.apply(coef, None, 0, *ts)


def _sum_node(plain: List[Tensor], weighted: List[Tuple[Tensor, int, float]], rest: Optional[Tensor],
              rest_edges: List[int], wflat: Tensor, plan: Plan) -> Tensor:
    """One :class:`_NodeSum` over the node's terms; every weight is gathered by one index op."""
    bias = None
    if rest is not None:
        bias = rest[plan.index(rest_edges, rest.device)].sum()
    coef = None
    if weighted:
        coef = wflat[plan.index([max(f, 0) for _, f, _ in weighted], wflat.device)]
        if any(f < 0 for _, f, _ in weighted):  # an auxiliary skip alone: weight β, no candidate
            coef = coef * torch.tensor([f >= 0 for _, f, _ in weighted], device=wflat.device, dtype=wflat.dtype)
        if any(c for _, _, c in weighted):
            coef = coef + torch.tensor([c for _, _, c in weighted], device=wflat.device, dtype=wflat.dtype)
    return _NodeSum.apply(coef, bias, len(plain), *plain, *(t for t, _, _ in weighted))
