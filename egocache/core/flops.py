"""Parameter and FLOP counts, with 1 multiply-add (MAC) = 1 FLOP, as the papers report them.

`count_flops` runs the model once under torch.utils.flop_counter.FlopCounterMode, which counts the
matrix products (mm, bmm, addmm, convolutions, attention kernels) at 2 FLOPs per MAC; we halve it.
Element-wise work (norms, activations, softmax, additions) is not counted, as in fvcore and the
published MotionFormer/ResNet figures. Works on the meta device (no memory, no compute), so a large
model can be measured on a small machine. The CPU flash-attention kernel, which FlopCounterMode does
not know, is counted like the other attention kernels.

Recurrent layers (nn.GRU, nn.LSTM, nn.RNN) are counted analytically, because what FlopCounterMode
sees depends on the backend (cuDNN runs them as one uncounted kernel). Per time step, layer and
direction, with input size i (the layer's input: the features for layer 0, h*directions after) and
hidden size h:
    GRU:  3 gates * (i*h + h*h) MACs + 3*h element-wise products (r*(W_hn h), z*h, (1-z)*n)
    LSTM: 4 gates * (i*h + r*h) MACs + 3*h products (f*c, i*g, o*tanh(c)) [+ h*r projection]
          with r = proj_size or h
    RNN:  i*h + h*h MACs
times the batch size and the sequence length (for a PackedSequence: its number of rows). Biases
and gate non-linearities are not counted. Whatever FlopCounterMode saw inside a recurrent module is
subtracted, so nothing is counted twice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

_RECURRENT = (nn.GRU, nn.LSTM, nn.RNN)


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once); only those with requires_grad if asked."""
    seen = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in seen if p.requires_grad or not trainable_only)


def _sdpa_cpu_flops(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size,
                    *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs (2 per MAC) of the CPU flash attention kernel: Q K^T and A V."""
    *batch, q_len, dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    rows = 1
    for size in batch:
        rows *= size
    return 2 * rows * q_len * k_len * (dim + v_dim)


def recurrent_macs(module: nn.RNNBase, inputs: torch.Tensor | PackedSequence) -> int:
    """MACs of one call of a GRU/LSTM/RNN on `inputs` (formulae in the module docstring)."""
    if isinstance(inputs, PackedSequence):
        steps = int(inputs.data.shape[0])  # sum over the batch of each sequence's length
    elif inputs.ndim == 2:
        steps = int(inputs.shape[0])
    else:
        steps = int(inputs.shape[0] * inputs.shape[1])
    h = module.hidden_size
    dirs = 2 if module.bidirectional else 1
    r = getattr(module, "proj_size", 0) or h
    per_step = 0
    for layer in range(module.num_layers):
        i = module.input_size if layer == 0 else r * dirs
        if isinstance(module, nn.GRU):
            per_step += dirs * (3 * (i * h + h * h) + 3 * h)
        elif isinstance(module, nn.LSTM):
            per_step += dirs * (4 * (i * h + r * h) + 3 * h + (h * r if r != h else 0))
        else:
            per_step += dirs * (i * h + h * h)
    return steps * per_step


def count_flops(model: nn.Module, inputs: torch.Tensor | tuple[Any, ...] | dict[str, Any]) -> int:
    """FLOPs (1 MAC = 1 FLOP) of one forward of `model` on `inputs` (a tensor, positional args or
    keyword args), in eval mode without gradients; the model's train/eval flags are restored."""
    args, kwargs = ((), inputs) if isinstance(inputs, dict) else (
        (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs), {})
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops})
    analytic, seen_inside = 0, 0
    starts: list[int] = []

    def before(module: nn.Module, module_inputs: tuple[Any, ...]) -> None:
        starts.append(counter.get_total_flops())

    def after(module: nn.Module, module_inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal analytic, seen_inside
        seen_inside += counter.get_total_flops() - starts.pop()
        analytic += recurrent_macs(module, module_inputs[0])

    hooks = []
    for m in model.modules():
        if isinstance(m, _RECURRENT):
            hooks += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.training = mode
    return (counter.get_total_flops() - seen_inside) // 2 + analytic
