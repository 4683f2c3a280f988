"""Helpers for checking formulations against each other in floating point (used by the tests
and ``tools/gpu_check.py``).

Two things make a float32-vs-float64 comparison meaningless if left alone:

- a fresh BatchNorm is the identity, so a folding bug in it would go unseen:
  :func:`randomize_norms` gives every norm real statistics;
- ReLU has a kink at 0. A pre-activation within float32 rounding of 0 can land on the other
  side of it in float32, and then the gradient of a whole region differs by the size of the
  gradient itself (seen: 5e-2 relative on one 2x32x70x90 input in 150). That is not rounding
  error and no tolerance should absorb it: :func:`draw_away_from_kinks` redraws such inputs.
"""
import copy
import math
from typing import Callable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest difference relative to the reference's largest magnitude; NaN when either
    holds a non-finite value or the shapes differ (a NaN error is a failure, never a pass)."""
    out, ref = out.detach().double(), ref.detach().double()
    if out.shape != ref.shape or not (torch.isfinite(out).all() and torch.isfinite(ref).all()):
        return math.nan
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


@torch.no_grad()
def randomize_norms(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (in place), so that checks of
    folding and of the formulations against each other see real normalisations, not the
    identity a fresh BatchNorm is. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.3, 2)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
    return model


@torch.no_grad()
def relu_margin(model: nn.Module, *inputs) -> float:
    """The smallest ``|pre-activation|`` of any ``nn.ReLU`` in ``model`` on ``inputs``, relative
    to that ReLU's largest one (``inf`` if the model has no ReLU). Runs a copy, so training-mode
    BatchNorm statistics of ``model`` are left as they were."""
    model = copy.deepcopy(model)
    margins = []

    def record(module, args):
        pre = args[0].abs()
        margins.append((pre.min() / pre.max().clamp_min(1e-30)).item())

    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_pre_hook(record)
    model(*inputs)
    return min(margins, default=float('inf'))


def draw_away_from_kinks(model: nn.Module, draw: Callable[[], tuple], margin: float = 1e-6,
                         tries: int = 50) -> tuple:
    """``draw()`` (a tuple of inputs for ``model``) again until no ReLU pre-activation of
    ``model`` lies within ``margin`` (relative) of 0. Give ``model`` in float64, and ``draw``
    returning float64 inputs. float32 rounding moves a pre-activation by about 1e-7 of the
    largest one, so 1e-6 keeps both precisions on the same side of every kink."""
    for _ in range(tries):
        inputs = draw()
        if relu_margin(model, *inputs) >= margin:
            return inputs
    raise RuntimeError(f'no input in {tries} draws kept every ReLU pre-activation {margin:g} '
                       'away from 0; use a smaller input or a smaller margin')
