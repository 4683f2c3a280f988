"""The Hire module's rearrangements as ``torch.library`` custom ops, for ``torch.compile``.

``torch.compile`` sees these as three opaque operators with known output sizes, so inductor
neither lowers nor fuses the index arithmetic inside them. Written out in the graph (as
slices, or as gathers), that arithmetic met three bugs of torch 2.13's inductor: with static
shapes, the gather's backward (a scatter) was miscompiled next to the channels-last layout
inductor picks for convolutions (out-of-bounds writes, the process aborts); with dynamic
shapes, sorting symbolic strides failed (``TypeError: cannot determine truth value of
Relational``, pytorch/pytorch#185510) and so did a value-range check in a reshape
(``ValueRangeError``). An op's inside runs eagerly: it is the plain path's own code
(:mod:`~mmhire.models.layers.region_rearrange`), so the compiled model has its numbers.

- ``mmhire::shift_pad_fold(x, dim, region_size, shift, pad_mode)``: roll, pad and fold one axis,
  ``(B, C, H, W) -> (B, C * p, Hp / p, W)`` (``dim=2``) or ``(B, C * p, H, Wp / p)`` (``dim=3``);
- ``mmhire::shift_pad_fold_backward(grad, dim, length, region_size, shift, pad_mode)``: its
  adjoint (the rows a padded position copied get its gradient added);
- ``mmhire::unfold_crop_unshift(x, dim, length, region_size, shift)``: the inverse for a
  branch's output. Its adjoint is ``shift_pad_fold`` with ``pad_mode='constant'``.

Each op's backward is another of these ops, so double backward works too. The ONNX exporters
and ``torch.export`` do not use them (no custom op may reach an exported graph): they get the
gather formulation of :mod:`~mmhire.models.layers.traceable`.
"""
import torch

from .region_rearrange import (crop_and_unshift, fold_regions, gather_indices, shift_and_pad,
                               unfold_regions)


def _fresh(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A custom op's output may not share memory with its input (a shortcut returned ``x`` or
    a view of it)."""
    if out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        return out.clone()
    return out


def _folded_size(x, dim: int, region_size: int):
    b, c, h, w = x.shape
    p = region_size
    if dim == 2:
        return b, c * p, (h + p - 1) // p, w
    return b, c * p, h, (w + p - 1) // p


def _unfolded_size(x, dim: int, length, region_size: int):
    b, cp, h, w = x.shape
    c = cp // region_size
    return (b, c, length, w) if dim == 2 else (b, c, h, length)


# ------------------------------------------------------------------------------ shift_pad_fold
@torch.library.custom_op('mmhire::shift_pad_fold', mutates_args=())
def shift_pad_fold(x: torch.Tensor, dim: int, region_size: int, shift: int,
                   pad_mode: str) -> torch.Tensor:
    out = fold_regions(shift_and_pad(x, dim, region_size, shift, pad_mode), dim, region_size)
    return _fresh(out.contiguous(), x)


@shift_pad_fold.register_fake
def _(x, dim, region_size, shift, pad_mode):
    return x.new_empty(_folded_size(x, dim, region_size))


def _shift_pad_fold_setup(ctx, inputs, output):
    x, dim, region_size, shift, pad_mode = inputs
    ctx.args = (dim, x.shape[dim], region_size, shift, pad_mode)


def _shift_pad_fold_grad(ctx, grad):
    return shift_pad_fold_backward(grad, *ctx.args), None, None, None, None


shift_pad_fold.register_autograd(_shift_pad_fold_grad, setup_context=_shift_pad_fold_setup)


# --------------------------------------------------------------------- shift_pad_fold_backward
@torch.library.custom_op('mmhire::shift_pad_fold_backward', mutates_args=())
def shift_pad_fold_backward(grad: torch.Tensor, dim: int, length: int, region_size: int,
                            shift: int, pad_mode: str) -> torch.Tensor:
    unfolded = unfold_regions(grad.contiguous(), dim, region_size)
    index = gather_indices(length, region_size, shift, pad_mode, device=grad.device)
    size = list(unfolded.shape)
    size[dim] = length + 1  # one spare row: 'constant' padding reads index ``length``
    out = unfolded.new_zeros(size).index_add_(dim, index, unfolded)
    return out.narrow(dim, 0, length).contiguous()


@shift_pad_fold_backward.register_fake
def _(grad, dim, length, region_size, shift, pad_mode):
    return grad.new_empty(_unfolded_size(grad, dim, length, region_size))


def _shift_pad_fold_backward_setup(ctx, inputs, output):
    ctx.args = (inputs[1], inputs[3], inputs[4], inputs[5])  # dim, region_size, shift, pad_mode


def _shift_pad_fold_backward_grad(ctx, grad):
    return shift_pad_fold(grad, *ctx.args), None, None, None, None, None


shift_pad_fold_backward.register_autograd(_shift_pad_fold_backward_grad,
                                          setup_context=_shift_pad_fold_backward_setup)


# ------------------------------------------------------------------------- unfold_crop_unshift
@torch.library.custom_op('mmhire::unfold_crop_unshift', mutates_args=())
def unfold_crop_unshift(x: torch.Tensor, dim: int, length: int, region_size: int,
                        shift: int) -> torch.Tensor:
    out = crop_and_unshift(unfold_regions(x, dim, region_size), dim, length, shift)
    return _fresh(out.contiguous(), x)


@unfold_crop_unshift.register_fake
def _(x, dim, length, region_size, shift):
    return x.new_empty(_unfolded_size(x, dim, length, region_size))


def _unfold_crop_unshift_setup(ctx, inputs, output):
    ctx.args = (inputs[1], inputs[3], inputs[4])  # dim, region_size, shift


def _unfold_crop_unshift_grad(ctx, grad):
    dim, region_size, shift = ctx.args
    # the adjoint of "keep the first ``length`` rows, rolled back by ``shift``": roll forward
    # and zero-pad, i.e. the forward rearrangement with constant padding
    return shift_pad_fold(grad, dim, region_size, shift, 'constant'), None, None, None, None


unfold_crop_unshift.register_autograd(_unfold_crop_unshift_grad,
                                      setup_context=_unfold_crop_unshift_setup)
