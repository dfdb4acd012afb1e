"""Model size as the NAS papers report it: parameters and multiply-accumulates (MACs).

MACs are counted by forward hooks on ``Conv2d`` (``out_elements · C_in/groups · kh · kw``) and
``Linear`` (``out_elements · in_features``) for one image in eval mode, so an auxiliary head that
only runs in training is not counted. This is the usual "FLOPs" of DARTS-space tables (DARTS_V2 at
20 cells, C=36: about 530M); BN, pooling, additions and activations are left out, as there.

A module that computes a multiply-accumulate product by other means than those two layers
counts itself: it defines ``forward_macs(output) -> int``, the MACs per image of the forward that
produced ``output``, and its children are not hooked.
The Neural DNF op does (:class:`~nas.blocks.dnf.DNFOp`: its conjunctions are a matmul of the
log-literals with the rule pool), so a budget in MACs restricts it like the convolutions it
competes with.

``bias=True`` adds one addition per output element of every conv or linear layer with a bias:
NAS-Bench-201's convention (Dong & Yang 2020, ``get_model_infos`` of their code: conv and linear
layers, biases included, nothing else). It is what makes the benchmark network's reported
7.78305 and 220.11969 MFLOPs (CIFAR-10, the paper prints them cut to 7.78 and 220.11): its only
bias is the classifier's, 10 additions (see :mod:`nas.cost`).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Tuple[int, ...], bias: bool = False) -> int:
    """MACs of one forward pass of a single input of shape ``input_shape`` (C, H, W); ``bias``:
    also one addition per output element of a layer with a bias (NAS-Bench-201's FLOPs)."""
    total = 0

    def per_output(m: nn.Module, inp_per_output: int) -> int:
        return inp_per_output + (1 if bias and m.bias is not None else 0)

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * per_output(m, (m.in_channels // m.groups) * kh * kw)

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal total
        total += out.numel() // out.shape[0] * per_output(m, m.in_features)

    def own_hook(m: nn.Module, inp, out) -> None:
        nonlocal total
        total += int(m.forward_macs(out))

    handles = []
    own = {id(m): m for m in model.modules() if callable(getattr(m, "forward_macs", None))}
    inside_own = {id(c) for m in own.values() for c in m.modules() if c is not m}
    for m in model.modules():
        if id(m) in inside_own:
            continue
        if id(m) in own:
            handles.append(m.register_forward_hook(own_hook))
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)  # a parameter-free op (pooling, identity) runs on the CPU
        model(torch.zeros((1, *input_shape)) if p is None
              else torch.zeros((1, *input_shape), device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def count_params(model: nn.Module, exclude: Sequence[str] = ("auxiliary",)) -> int:
    """Parameters whose qualified name contains none of ``exclude`` (DARTS counts without its
    auxiliary head)."""
    return sum(p.numel() for n, p in model.named_parameters() if not any(e in n for e in exclude))
