"""The Hire module's rearrangements on channels-last (NHWC) memory, for the fast path.

On CPUs, oneDNN runs 1x1 convolutions on channels-last tensors 1.4x-2.8x faster than on NCHW
ones (measured at Hire-MLP-S's stage sizes, ``tools/benchmark.py``). In NHWC memory the region
fold along the width is free: ``(B, H, W, C)`` viewed as ``(B, H, W / p, p * C)`` already holds
each region's ``p`` tokens side by side, in *position-major* order (channel ``i * C + c`` is
token ``i`` of channel ``c``). The released weights use *channel-major* order (``c * p + i``),
so the fast path permutes the (small) weights instead of the (large) maps. Folding along the
height needs one transpose copy. Un-folding, cropping the padding and undoing the shift are
strided views of a branch's output, added straight into the module's output, with no copy.

Layout names: *NHWC* (``x_nhwc``, :func:`to_nhwc`) is a tensor *shaped* ``(B, H, W, C)`` (or
split further with the channels last, ``(B, H, W / p, p, C)``); *channels-last* is a tensor
shaped ``(B, C, H, W)`` whose memory is ordered as NHWC (``memory_format=torch.channels_last``);
``x.permute(0, 2, 3, 1)`` turns one into the other without a copy. ``height`` and ``width`` are
the map's data sizes, ``regions_h`` / ``regions_w`` the number of regions along a padded axis.
"""
import torch

from .region_rearrange import gather_indices


def in_channels_position_major(weight: torch.Tensor, region_size: int) -> torch.Tensor:
    """A 1x1 conv weight over ``C * p`` folded channels, reordered from ``c * p + i`` to
    ``i * C + c``."""
    out_ch, in_ch = weight.shape[:2]
    return weight.reshape(out_ch, in_ch // region_size, region_size).transpose(1, 2).reshape(
        out_ch, in_ch, 1, 1)


def _height_runs(length: int, region_size: int, shift: int):
    """Where the data rows of a shifted, padded and folded height axis come from: ``(i, j0,
    count, q0)`` for each token ``i`` of a region, meaning that the padded rows ``r = j * p + i``
    for ``j = j0 .. j0 + count - 1`` (all ``r < length``; the rest is padding) hold the map's rows
    ``q0, q0 + p, ...``, where ``q = (r - shift) mod length``. The shift splits each token's rows
    in at most two runs; together the runs hold every row of the map exactly once.

    Example: ``length=5``, ``p=2``, ``shift=1``. The shifted axis reads rows
    ``q = (r - 1) mod 5``: padded rows ``r = 0 1 2 3 4`` hold map rows ``4 0 1 2 3``, and ``r = 5``
    is padding. Token 0 of the regions (``r = 0, 2, 4``) holds rows ``4, 1, 3``: the shift breaks
    the stride, so two runs, ``(0, 0, 1, 4)`` (region 0: row 4) and ``(0, 1, 2, 1)`` (regions 1-2:
    rows 1, 3). Token 1 (``r = 1, 3``) holds rows ``0, 2``: one run, ``(1, 0, 2, 0)``. Each run is
    one strided copy, ``x[q0::p][:count]`` into ``folded[j0:j0 + count, i]``.
    """
    p = region_size
    s = shift % length
    runs = []
    for i in range(min(p, length)):
        n = -(-(length - i) // p)  # data rows holding token i
        q0 = (i - s) % length
        first = min(n, -(-(length - q0) // p))
        runs.append((i, 0, first, q0))
        if first < n:
            runs.append((i, first, n - first, q0 + first * p - length))
    return runs


def _width_pieces(length: int, shift: int):
    """:func:`_height_runs` for the width, where folding is a view: ``(map_cols, frame_cols)``
    slice pairs (the shift is a roll, two slices at most)."""
    s = shift % length
    pieces = [(slice(0, length - s), slice(s, length))]
    if s:
        pieces.append((slice(length - s, length), slice(0, s)))
    return pieces


def _padding_sources(length: int, region_size: int, shift: int, pad_mode: str):
    """The padded positions ``r >= length`` of a shifted axis and the map position each one
    copies, ``(r, q)``; ``q`` is ``None`` for zeros (``'constant'``). Read off
    :func:`~mmhire.models.layers.region_rearrange.gather_indices`, the one definition of the
    padding (circular padding keeps wrapping, replicate repeats the shifted map's last position).
    """
    idx = gather_indices(length, region_size, shift, pad_mode)[length:].tolist()
    return [(r, None if pad_mode == 'constant' else q)
            for r, q in enumerate(idx, start=length)]


def _fold_height_(folded: torch.Tensor, x: torch.Tensor, length: int, region_size: int,
                  shift: int) -> None:
    """Copy the data rows of NHWC ``x`` ``(B, H, W, C)``, shifted, into ``folded``
    ``(B, Hp / p, W, p, C)``; the padding rows are left as they are."""
    p = region_size
    for i, j0, count, q0 in _height_runs(length, p, shift):
        folded[:, j0:j0 + count, :, i] = x[:, q0:q0 + (count - 1) * p + 1:p]


def _unfold_height_(x: torch.Tensor, folded: torch.Tensor, length: int, region_size: int,
                    shift: int, accumulate: bool) -> None:
    """The inverse of :func:`_fold_height_`: write (or add) the data rows of ``folded`` back
    into their rows of ``x``."""
    p = region_size
    for i, j0, count, q0 in _height_runs(length, p, shift):
        rows = x[:, q0:q0 + (count - 1) * p + 1:p]
        if accumulate:
            rows.add_(folded[:, j0:j0 + count, :, i])
        else:
            rows.copy_(folded[:, j0:j0 + count, :, i])


def _fold_width_(frame: torch.Tensor, x: torch.Tensor, length: int, shift: int) -> None:
    """Copy the columns of NHWC ``x``, shifted, into ``frame`` ``(B, H, Wp, C)``."""
    for map_cols, frame_cols in _width_pieces(length, shift):
        frame[:, :, frame_cols] = x[:, :, map_cols]


def _unfold_width_(x: torch.Tensor, frame: torch.Tensor, length: int, shift: int,
                   accumulate: bool) -> None:
    """The inverse of :func:`_fold_width_`."""
    for map_cols, frame_cols in _width_pieces(length, shift):
        if accumulate:
            x[:, :, map_cols].add_(frame[:, :, frame_cols])
        else:
            x[:, :, map_cols].copy_(frame[:, :, frame_cols])


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> its ``(B, H, W, C)`` view, contiguous (a copy only if ``x`` is not
    channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def fold_width_view(frame: torch.Tensor, region_size: int) -> torch.Tensor:
    """``(B, C, H, Wp)`` channels-last -> ``(B, p * C, H, Wp / p)`` channels-last,
    position-major: a view when ``frame`` is channels-last contiguous."""
    b, c, height, padded_width = frame.shape
    p = region_size
    return frame.permute(0, 2, 3, 1).reshape(b, height, padded_width // p, p * c).permute(
        0, 3, 1, 2)


class ShiftPadFold(torch.autograd.Function):
    """Shift, pad and fold one axis of a channels-last map for a region MLP, in one copy.

    ``(B, C, H, W)`` -> ``(B, p * C, Hp / p, W)`` (``dim=2``) or ``(B, p * C, H, Wp / p)``
    (``dim=3``), channels-last, position-major (see the module docstring): the same numbers as
    :func:`~mmhire.models.layers.region_rearrange.shift_and_pad` followed by
    :func:`~mmhire.models.layers.region_rearrange.fold_regions` with the channels reordered.
    Forward writes every position of the result once. Autograd's own backward of the slices,
    ``cat`` and transpose it replaces zero-fills and copies full-size tensors several times;
    this backward writes each data position's gradient once and adds the padding's gradients
    onto the positions the padding copied.
    """

    @staticmethod
    def forward(ctx, x, dim, region_size, shift, pad_mode):
        b, c, height, width = x.shape
        p = region_size
        x_nhwc = to_nhwc(x)
        pads = _padding_sources(x.shape[dim], p, shift, pad_mode)
        if dim == 2:
            folded_nhwc = x.new_empty(b, (height + len(pads)) // p, width, p, c)
            _fold_height_(folded_nhwc, x_nhwc, height, p, shift)
            for r, q in pads:
                folded_nhwc[:, r // p, :, r % p] = 0 if q is None else x_nhwc[:, q]
            out_nhwc = folded_nhwc.reshape(b, -1, width, p * c)
        else:
            frame_nhwc = x.new_empty(b, height, width + len(pads), c)
            _fold_width_(frame_nhwc, x_nhwc, width, shift)
            for r, q in pads:
                frame_nhwc[:, :, r] = 0 if q is None else x_nhwc[:, :, q]
            out_nhwc = frame_nhwc.reshape(b, height, -1, p * c)
        ctx.args = dim, p, shift, pads, (height, width)
        return out_nhwc.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        dim, p, shift, pads, (height, width) = ctx.args
        grad_nhwc = to_nhwc(grad)
        b, c = grad_nhwc.shape[0], grad_nhwc.shape[3] // p
        grad_x_nhwc = grad_nhwc.new_empty(b, height, width, c)
        if dim == 2:
            grad_nhwc = grad_nhwc.reshape(b, -1, width, p, c)
            _unfold_height_(grad_x_nhwc, grad_nhwc, height, p, shift, accumulate=False)
            for r, q in pads:
                if q is not None:
                    grad_x_nhwc[:, q] += grad_nhwc[:, r // p, :, r % p]
        else:
            grad_nhwc = grad_nhwc.reshape(b, height, -1, c)
            _unfold_width_(grad_x_nhwc, grad_nhwc, width, shift, accumulate=False)
            for r, q in pads:
                if q is not None:
                    grad_x_nhwc[:, :, q] += grad_nhwc[:, :, r]
        return grad_x_nhwc.permute(0, 3, 1, 2), None, None, None, None


def shift_pad_fold(x: torch.Tensor, dim: int, region_size: int, shift: int,
                   pad_mode: str) -> torch.Tensor:
    """:class:`ShiftPadFold`, or a free view when the width needs neither shift nor padding."""
    length = x.shape[dim]
    if (dim == 3 and shift % length == 0 and length % region_size == 0
            and x.is_contiguous(memory_format=torch.channels_last)):
        return fold_width_view(x, region_size)
    return ShiftPadFold.apply(x, dim, region_size, shift, pad_mode)


class AddBranches(torch.autograd.Function):
    """``out_c += unfold_h(out_h) + unfold_w(out_w)`` in place, with its own backward.

    Forward adds the height and width branches into the channel branch's NHWC ``out_c``
    through strided views: no un-fold, crop or un-shift copies. Autograd would answer each of
    those in-place slice updates with a full-size zero tensor; this backward writes each
    branch's gradient once, straight into its folded layout, and zeroes only the padding.

    Inputs: ``out_c`` NHWC ``(B, H, W, C)``; ``out_h`` ``(B, p * C, Hp / p, W)`` and ``out_w``
    ``(B, p * C, H, Wp / p)``, channels-last, position-major (see :class:`ShiftPadFold`); the
    region size and the shift. Returns ``out_c``.
    """

    @staticmethod
    def forward(ctx, out_c, out_h, out_w, region_size, shift):
        b, height, width, c = out_c.shape
        p = region_size
        regions_h, regions_w = out_h.shape[2], out_w.shape[3]
        out_h_nhwc = out_h.permute(0, 2, 3, 1).reshape(b, regions_h, width, p, c)
        _unfold_height_(out_c, out_h_nhwc, height, p, shift, accumulate=True)
        out_w_nhwc = out_w.permute(0, 2, 3, 1).reshape(b, height, regions_w * p, c)
        _unfold_width_(out_c, out_w_nhwc, width, shift, accumulate=True)
        ctx.mark_dirty(out_c)
        ctx.args = p, shift, regions_h, regions_w
        return out_c

    @staticmethod
    def backward(ctx, grad_out):
        p, shift, regions_h, regions_w = ctx.args
        grad_nhwc = grad_out.contiguous()
        b, height, width, c = grad_nhwc.shape

        grad_h_nhwc = grad_nhwc.new_empty(b, regions_h, width, p, c)
        _fold_height_(grad_h_nhwc, grad_nhwc, height, p, shift)
        for r in range(height, regions_h * p):  # padding rows: not in the output
            grad_h_nhwc[:, r // p, :, r % p] = 0
        grad_h = grad_h_nhwc.reshape(b, regions_h, width, p * c).permute(0, 3, 1, 2)

        grad_w_nhwc = grad_nhwc.new_empty(b, height, regions_w * p, c)
        _fold_width_(grad_w_nhwc, grad_nhwc, width, shift)
        grad_w_nhwc[:, :, width:] = 0  # padding columns
        grad_w = grad_w_nhwc.reshape(b, height, regions_w, p * c).permute(0, 3, 1, 2)
        return grad_nhwc, grad_h, grad_w, None, None


class ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient in channels-last memory.

    Placed where the backbone's channels-last maps leave as NCHW outputs, it keeps the
    gradients flowing back into the network channels-last, the layout its convolutions' backward
    is fast in.
    """

    @staticmethod
    def forward(ctx, x):
        # a view with x's own strides (``view_as`` may renumber a size-1 batch dimension's
        # stride, which makes the layout look NCHW to the convolutions that follow)
        return x.as_strided(x.size(), x.stride(), x.storage_offset())

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)
