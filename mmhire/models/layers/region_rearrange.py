"""Hierarchical rearrangement of Hire-MLP: cross-region shifts and inner-region folding.

The Hire module mixes tokens along one spatial axis in two steps:

1. *Cross-region* rearrangement: the map is rolled by ``shift`` positions, so that from block to
   block different tokens share a region.
2. *Inner-region* rearrangement: the axis is padded to a multiple of ``region_size`` and every
   group of ``region_size`` consecutive tokens is folded into the channel dimension, so that a
   1x1 convolution mixes the tokens of a region.

Both the roll and the padding are expressed as one gather with precomputed indices. That keeps the
released model's numbers (``torch.roll`` followed by circular ``F.pad``) wherever the released code
runs, and extends circular padding to pads larger than the map (a 1-row map with region size 3),
where ``F.pad`` refuses: the padded positions then wrap around modulo the map size.
"""
import torch

PAD_MODES = ('circular', 'constant', 'replicate')


def padded_length(length: int, region_size: int) -> int:
    """The smallest multiple of ``region_size`` that is >= ``length``."""
    return -(-length // region_size) * region_size


def gather_indices(length: int, region_size: int, shift: int, pad_mode: str,
                   device=None) -> torch.Tensor:
    """Source positions of the shifted and padded axis.

    Position ``r`` of the result reads position ``idx[r]`` of the input; for ``pad_mode='constant'``
    the padded positions hold ``length``, an index one past the end that the caller maps to zeros.
    """
    total = padded_length(length, region_size)
    pos = torch.arange(total, device=device)
    if pad_mode == 'replicate':
        # Padding repeats the last row of the *shifted* map.
        pos = pos.clamp(max=length - 1)
    idx = (pos - shift) % length
    if pad_mode == 'constant':
        idx[length:] = length
    return idx


def shift_and_pad(x: torch.Tensor, dim: int, region_size: int, shift: int,
                  pad_mode: str) -> torch.Tensor:
    """Roll ``x`` by ``shift`` along ``dim`` and pad it to a multiple of ``region_size``."""
    length = x.shape[dim]
    if shift % length == 0 and length % region_size == 0:
        return x  # nothing to move: avoid a copy
    idx = gather_indices(length, region_size, shift, pad_mode, device=x.device)
    if pad_mode == 'constant' and idx.numel() > length:
        zeros_shape = list(x.shape)
        zeros_shape[dim] = 1
        x = torch.cat([x, x.new_zeros(zeros_shape)], dim=dim)
    return x.index_select(dim, idx)


def crop_and_unshift(x: torch.Tensor, dim: int, length: int, shift: int) -> torch.Tensor:
    """Inverse of :func:`shift_and_pad`: keep the first ``length`` positions and roll back."""
    if shift % length == 0:
        return x.narrow(dim, 0, length)
    idx = (torch.arange(length, device=x.device) + shift) % length
    return x.index_select(dim, idx)


def fold_regions(x: torch.Tensor, dim: int, region_size: int) -> torch.Tensor:
    """Fold groups of ``region_size`` consecutive positions along ``dim`` (2 = H, 3 = W) into
    channels.

    ``(B, C, H, W) -> (B, C * p, H / p, W)`` for ``dim=2``; channel ``c * p + i`` holds position
    ``i``
    of each group for input channel ``c``.
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
