"""The Hire module's rearrangements on channels-last (NHWC) memory, for the fast path.

On CPUs, oneDNN runs 1x1 convolutions on channels-last tensors 1.4x-2.8x faster than on NCHW
ones (measured at Hire-MLP-S's stage sizes, ``tools/benchmark.py``). In NHWC memory the region
fold along the width is free: ``(B, H, W, C)`` viewed as ``(B, H, W / p, p * C)`` already holds
each region's ``p`` tokens side by side, in *position-major* order (channel ``i * C + c`` is
token ``i`` of channel ``c``). The released weights use *channel-major* order (``c * p + i``),
so the fast path permutes the (small) weights instead of the (large) maps. Folding along the
height needs one transpose copy. Un-folding, cropping the padding and undoing the shift are
strided views of the region MLP's output, added straight into the fused output, with no copy.
"""
import torch

from .region_rearrange import padded_length


def in_channels_position_major(weight: torch.Tensor, region_size: int) -> torch.Tensor:
    """A 1x1 conv weight over ``C * p`` folded channels, reordered from ``c * p + i`` to
    ``i * C + c``."""
    out_ch, in_ch = weight.shape[:2]
    return weight.reshape(out_ch, in_ch // region_size, region_size).transpose(1, 2).reshape(
        out_ch, in_ch, 1, 1)


def out_channels_position_major(weight: torch.Tensor, bias, region_size: int):
    """A 1x1 conv weight and bias producing ``C * p`` folded channels, reordered from
    ``c * p + i`` to ``i * C + c``."""
    out_ch = weight.shape[0]
    c = out_ch // region_size
    weight = weight.reshape(c, region_size, -1).transpose(0, 1).reshape(out_ch, -1, 1, 1)
    if bias is not None:
        bias = bias.reshape(c, region_size).t().reshape(out_ch)
    return weight, bias


def fold_height_nhwc(frame: torch.Tensor, region_size: int) -> torch.Tensor:
    """``(B, C, Hp, W)`` channels-last -> ``(B, p * C, Hp / p, W)`` channels-last, position-major.

    One copy (the transpose of the region rows with the width).
    """
    b, c, hp, w = frame.shape
    p = region_size
    rows = frame.permute(0, 2, 3, 1).reshape(b, hp // p, p, w, c)
    folded = rows.transpose(2, 3).reshape(b, hp // p, w, p * c)  # the copy
    return folded.permute(0, 3, 1, 2)


def fold_width_nhwc(frame: torch.Tensor, region_size: int) -> torch.Tensor:
    """``(B, C, H, Wp)`` channels-last -> ``(B, p * C, H, Wp / p)``: a view when ``frame`` is
    channels-last contiguous."""
    b, c, h, wp = frame.shape
    p = region_size
    return frame.permute(0, 2, 3, 1).reshape(b, h, wp // p, p * c).permute(0, 3, 1, 2)


def _runs(length: int, region_size: int, shift: int, i: int):
    """For the padded rows ``r = j * p + i`` that hold data (``r < length``): yield
    ``(j0, count, q0)``, meaning rows ``j0 .. j0 + count - 1`` go to output positions
    ``q0, q0 + p, ...`` (the un-shift ``q = (r - shift) mod length`` splits them in at most two
    runs)."""
    p = region_size
    n = -(-(length - i) // p) if i < length else 0
    if n == 0:
        return
    q0 = (i - shift) % length
    first = min(n, -(-(length - q0) // p))
    yield 0, first, q0
    if first < n:
        yield first, n - first, q0 + first * p - length


def add_height_branch_(out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, length: int,
                       region_size: int, shift: int) -> None:
    """``out += weight * crop_and_unshift(unfold(y))`` along the height, in place, no copies.

    ``out``: ``(B, H, W, C)`` (NHWC view); ``y``: the region MLP output ``(B, p * C, Hp / p, W)``
    (position-major channels); ``weight``: ``(B, 1, 1, C)``.
    """
    b, pc, hj, w = y.shape
    p = region_size
    yn = y.permute(0, 2, 3, 1).reshape(b, hj, w, p, pc // p)
    s = shift % length
    for i in range(p):
        for j0, count, q0 in _runs(length, p, s, i):
            dst = out[:, q0:q0 + (count - 1) * p + 1:p]
            dst.addcmul_(yn[:, j0:j0 + count, :, i], weight)


def add_width_branch_(out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, length: int,
                      region_size: int, shift: int) -> None:
    """:func:`add_height_branch_` along the width: the unfold is a view, the un-shift two
    slices."""
    b, pc, h, wj = y.shape
    p = region_size
    frame = y.permute(0, 2, 3, 1).reshape(b, h, wj * p, pc // p)  # (B, H, Wp, C)
    s = shift % length
    out[:, :, :length - s].addcmul_(frame[:, :, s:length], weight)
    if s:
        out[:, :, length - s:].addcmul_(frame[:, :, :s], weight)


def height_branch_mean(y: torch.Tensor, length: int, region_size: int) -> torch.Tensor:
    """Mean over the rows that hold data (not padding) of the height branch: ``(B, C)``."""
    b, pc, hj, w = y.shape
    p = region_size
    yn = y.permute(0, 2, 3, 1).reshape(b, hj, w, p, pc // p)
    last = length - (hj - 1) * p  # data rows in the last region
    total = yn[:, -1, :, :last].sum(dim=(1, 2))
    if hj > 1:
        total = total + yn[:, :-1].sum(dim=(1, 2, 3))
    return total / (length * w)


def width_branch_mean(y: torch.Tensor, length: int, region_size: int) -> torch.Tensor:
    """Mean over the columns that hold data of the width branch: ``(B, C)``."""
    b, pc, h, wj = y.shape
    frame = y.permute(0, 2, 3, 1).reshape(b, h, wj * region_size, pc // region_size)
    return frame[:, :, :length].mean(dim=(1, 2))


__all__ = ['padded_length', 'in_channels_position_major', 'out_channels_position_major',
           'fold_height_nhwc', 'fold_width_nhwc', 'add_height_branch_', 'add_width_branch_',
           'height_branch_mean', 'width_branch_mean']
