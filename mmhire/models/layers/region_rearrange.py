"""Hierarchical rearrangement of Hire-MLP: cross-region shifts and inner-region folding.

The Hire module mixes tokens along one spatial axis in two steps:

1. *Cross-region* rearrangement: the map is rolled by ``shift`` positions, so that from block to
   block different tokens share a region.
2. *Inner-region* rearrangement: the axis is padded to a multiple of ``region_size`` and every
   group of ``region_size`` consecutive tokens is folded into the channel dimension, so that a
   1x1 convolution mixes the tokens of a region.

This file is the one definition of where each position comes from, as index tensors that both
formulations gather with (the plain path here, the fast path in
:mod:`~mmhire.models.layers.branch_folding`): position ``r`` of the shifted, padded axis reads
input position ``(r - shift) mod length``; ``'replicate'`` clamps ``r`` to the last data position
first, and ``'constant'`` reads zeros past the end. That keeps the released model's numbers
(``torch.roll`` followed by circular ``F.pad``) wherever the released code runs, and extends
circular padding to pads larger than the map (a 1-row map with region size 3), where ``F.pad``
refuses: the padded positions wrap around modulo the map size.

The indices are built from the sizes with tensor operations only, so a recorder
(``torch.jit.trace``, whose sizes are 0-d tensors; ``torch.export`` and ``torch.compile``, whose
sizes may be ``SymInt``) records them as part of one graph that serves every size. An eager run
with integer sizes takes them from a cache instead (:func:`cached_indices`): no kernel launches
for them.
"""
import functools

import torch

from .capture import is_graph_capture

PAD_MODES = ('circular', 'constant', 'replicate')


def _as_tensor(length, device) -> torch.Tensor:
    """A size as a 0-d int64 tensor. (``remainder`` by a ``SymInt`` fails in the dynamo ONNX
    exporter's translation; by a tensor every recorder handles it.)"""
    return torch.full((), length, dtype=torch.long, device=device)


def padded_length(length, region_size: int):
    """The smallest multiple of ``region_size`` that is >= ``length`` (int, SymInt or 0-d
    tensor)."""
    return (length + region_size - 1) // region_size * region_size


def shift_pad_index(length, region_size: int, shift: int, pad_mode: str,
                    device=None) -> torch.Tensor:
    """Source positions of the shifted axis padded to a multiple of ``region_size``: position
    ``r`` reads input position ``index[r]``. For ``pad_mode='constant'`` the padded positions
    read a real position too; :func:`data_mask` says which to zero."""
    n = _as_tensor(length, device)
    pos = torch.arange(padded_length(length, region_size), device=device)
    if pad_mode == 'replicate':  # the padding repeats the shifted map's last position
        pos = torch.minimum(pos, n - 1)
    return torch.remainder(pos - shift, n)


def data_mask(length, region_size: int, device=None) -> torch.Tensor:
    """``(Lp,)`` bool: which positions of the padded axis hold data (for zero padding)."""
    return torch.arange(padded_length(length, region_size), device=device) < _as_tensor(
        length, device)


def crop_index(length, shift: int, device=None) -> torch.Tensor:
    """Where output position ``q`` sits on the shifted, padded axis: ``(q + shift) mod length``
    (reading it crops the padding and undoes the shift)."""
    return torch.remainder(torch.arange(length, device=device) + shift, _as_tensor(length, device))


def region_token_weights(length, region_size: int, dtype, device=None) -> torch.Tensor:
    """``(p, R)``: ``1 / length`` where token ``i`` of region ``j`` holds data, 0 where it is
    padding. Applied to a per-region mean of a region MLP's hidden map, it gives each token's
    share of the branch's mean over the data positions
    (:func:`~mmhire.models.layers.branch_folding.branch_mean`); the ``1 / length`` comes
    first so that nothing is ever a sum over a whole map (float16 ends at 65504)."""
    p = region_size
    regions = padded_length(length, p) // p
    rows = (torch.arange(regions, device=device).reshape(1, -1) * p
            + torch.arange(p, device=device).reshape(-1, 1))
    holds = (rows < _as_tensor(length, device)).to(dtype)
    return holds / length


def region_token_shares(length, region_size: int, dtype, device=None) -> torch.Tensor:
    """``(p,)``: the share of the axis' data positions that are token ``i`` of their region
    (:func:`region_token_weights` summed over the regions)."""
    return region_token_weights(length, region_size, dtype, device).sum(dim=1)


@functools.lru_cache(maxsize=1024)
def _cached(fn, device, dtype, *args):
    if dtype is None:
        return fn(*args, device=device)
    return fn(*args, dtype=dtype, device=device)


def cached_indices(fn, *args, device, dtype=None) -> torch.Tensor:
    """``fn(*args, device=device)``, from a cache in an eager run with integer sizes (index
    tensors cost a few kernel launches each, the same ones for every batch), computed afresh
    while a graph is recorded, so that it follows the recorded sizes."""
    if is_graph_capture() or not all(isinstance(a, (int, str)) for a in args):
        return fn(*args, device=device) if dtype is None else fn(*args, dtype=dtype,
                                                                  device=device)
    return _cached(fn, torch.device(device), dtype, *args)


def shift_and_pad(x: torch.Tensor, dim: int, region_size: int, shift: int,
                  pad_mode: str) -> torch.Tensor:
    """Roll ``x`` by ``shift`` along ``dim`` and pad it to a multiple of ``region_size``."""
    length = x.shape[dim]
    if isinstance(length, int) and shift % length == 0 and length % region_size == 0:
        return x  # nothing to move: avoid a copy
    index = cached_indices(shift_pad_index, length, region_size, shift, pad_mode,
                           device=x.device)
    x = x.index_select(dim, index)
    if pad_mode == 'constant':
        mask = cached_indices(data_mask, length, region_size, device=x.device)
        x = torch.where(mask.reshape([-1] + [1] * (x.dim() - 1 - dim)), x, 0.)
    return x


def crop_and_unshift(x: torch.Tensor, dim: int, length, shift: int) -> torch.Tensor:
    """Inverse of :func:`shift_and_pad`: keep the data positions and roll back."""
    if isinstance(length, int) and shift % length == 0:
        return x.narrow(dim, 0, length)
    return x.index_select(dim, cached_indices(crop_index, length, shift, device=x.device))


def fold_regions(x: torch.Tensor, dim: int, region_size: int) -> torch.Tensor:
    """Fold groups of ``region_size`` consecutive positions along ``dim`` (2 = H, 3 = W) into
    channels.

    ``(B, C, H, W) -> (B, C * p, H / p, W)`` for ``dim=2``; channel ``c * p + i`` holds position
    ``i`` of each group for input channel ``c`` (the released *channel-major* order).
    """
    b, c, h, w = x.shape
    p = region_size
    if dim == 2:
        x = x.reshape(b, c, h // p, p, w).permute(0, 1, 3, 2, 4)
        return x.reshape(b, c * p, h // p, w)
    x = x.reshape(b, c, h, w // p, p).permute(0, 1, 4, 2, 3)
    return x.reshape(b, c * p, h, w // p)


def unfold_regions(x: torch.Tensor, dim: int, region_size: int) -> torch.Tensor:
    """Inverse of :func:`fold_regions`."""
    b, cp, h, w = x.shape
    p = region_size
    c = cp // p
    if dim == 2:
        x = x.reshape(b, c, p, h, w).permute(0, 1, 3, 2, 4)
        return x.reshape(b, c, h * p, w)
    x = x.reshape(b, c, p, h, w).permute(0, 1, 3, 4, 2)
    return x.reshape(b, c, h, w * p)
