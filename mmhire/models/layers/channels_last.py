"""The Hire module's rearrangements on channels-last (NHWC) memory, for the fast path.

On CPUs, oneDNN runs 1x1 convolutions on channels-last tensors 1.4x-2.8x faster than on NCHW
ones (measured at Hire-MLP-S's stage sizes, ``tools/benchmark.py``). In NHWC memory the region
fold along the width is free: ``(B, H, W, C)`` viewed as ``(B, H, W / p, p * C)`` already holds
each region's ``p`` tokens side by side, in *position-major* order (channel ``i * C + c`` is
token ``i`` of channel ``c``). The released weights use *channel-major* order (``c * p + i``),
so the fast path permutes the (small) weights instead of the (large) maps. Folding along the
height needs one transpose copy. Un-folding, cropping the padding and undoing the shift are
strided views of a branch's output, added straight into the module's output, with no copy.
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
    in at most two runs; together the runs hold every row of the map exactly once."""
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


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> its ``(B, H, W, C)`` view, contiguous (a copy only if ``x`` is not
    channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def fold_width_nhwc(frame: torch.Tensor, region_size: int) -> torch.Tensor:
    """``(B, C, H, Wp)`` channels-last -> ``(B, p * C, H, Wp / p)``: a view when ``frame`` is
    channels-last contiguous."""
    b, c, h, wp = frame.shape
    p = region_size
    return frame.permute(0, 2, 3, 1).reshape(b, h, wp // p, p * c).permute(0, 3, 1, 2)


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
        b, c, h, w = x.shape
        p = region_size
        xn = _nhwc(x)
        pads = _padding_sources(x.shape[dim], p, shift, pad_mode)
        if dim == 2:
            folded = x.new_empty(b, (h + len(pads)) // p, w, p, c)
            _fold_height_(folded, xn, h, p, shift)
            for r, q in pads:
                folded[:, r // p, :, r % p] = 0 if q is None else xn[:, q]
            out = folded.reshape(b, -1, w, p * c)
        else:
            frame = x.new_empty(b, h, w + len(pads), c)
            _fold_width_(frame, xn, w, shift)
            for r, q in pads:
                frame[:, :, r] = 0 if q is None else xn[:, :, q]
            out = frame.reshape(b, h, -1, p * c)
        ctx.args = dim, p, shift, pads, (h, w)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        dim, p, shift, pads, (h, w) = ctx.args
        g = _nhwc(grad)
        b, c = g.shape[0], g.shape[3] // p
        grad_x = g.new_empty(b, h, w, c)
        if dim == 2:
            g = g.reshape(b, -1, w, p, c)
            _unfold_height_(grad_x, g, h, p, shift, accumulate=False)
            for r, q in pads:
                if q is not None:
                    grad_x[:, q] += g[:, r // p, :, r % p]
        else:
            g = g.reshape(b, h, -1, c)
            _unfold_width_(grad_x, g, w, shift, accumulate=False)
            for r, q in pads:
                if q is not None:
                    grad_x[:, :, q] += g[:, :, r]
        return grad_x.permute(0, 3, 1, 2), None, None, None, None


def shift_pad_fold(x: torch.Tensor, dim: int, region_size: int, shift: int,
                   pad_mode: str) -> torch.Tensor:
    """:class:`ShiftPadFold`, or a free view when the width needs neither shift nor padding."""
    length = x.shape[dim]
    if (dim == 3 and shift % length == 0 and length % region_size == 0
            and x.is_contiguous(memory_format=torch.channels_last)):
        return fold_width_nhwc(x, region_size)
    return ShiftPadFold.apply(x, dim, region_size, shift, pad_mode)


def region_branch_mean(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       length: int, dim: int) -> torch.Tensor:
    """Mean over the data positions (not the padding) of a region branch's output, ``(B, C)``,
    from its hidden map, without computing the output.

    The output at token ``i`` of a region is ``weight[:, i] @ hidden + bias[:, i]``. Every
    region holds data at all ``p`` tokens except possibly the last one along ``dim``, which
    holds ``rem``; so the sum over data positions needs only the hidden map's total and its
    last region's sum. ``hidden``: ``(B, K, Hp / p, W)`` (``dim=2``) or ``(B, K, H, Wp / p)``
    (``dim=3``); ``weight``: ``(C, p, K)``; ``bias``: ``(C, p)``.
    """
    p = weight.shape[1]
    regions = hidden.shape[dim]
    across = hidden.shape[5 - dim]  # the other spatial axis, which has no padding
    rem = length - (regions - 1) * p  # data tokens in the last region
    # per-region sums first: their backward is a broadcast, where narrowing the map itself
    # would zero-fill a full-size gradient
    region_sums = hidden.sum(dim=5 - dim)  # (B, K, regions)
    total = region_sums.sum(dim=2)  # (B, K)
    last = region_sums[:, :, -1]
    # per token i: the sum of the hidden map over the regions whose token i holds data
    token_sums = total.unsqueeze(1) - last.unsqueeze(1) * (
        torch.arange(p, device=hidden.device) >= rem).to(hidden.dtype).reshape(1, p, 1)
    counts = torch.full((p,), regions, dtype=hidden.dtype, device=hidden.device)
    counts[rem:] -= 1
    out = torch.einsum('cik,bik->bc', weight, token_sums) + (bias * counts).sum(1) * across
    return out / (length * across)


class AddBranches(torch.autograd.Function):
    """``ch += unfold_h(yh) + unfold_w(yw)`` on NHWC memory, in place, with its own backward.

    Forward adds the height and width branches into ``ch`` through strided views: no un-fold,
    crop or un-shift copies. Autograd would answer each of those in-place slice updates with a
    full-size zero tensor; this backward writes each branch's gradient once, straight into its
    folded layout, and zeroes only the padding.

    Inputs: ``ch`` ``(B, H, W, C)``; ``yh`` ``(B, p * C, Hp / p, W)`` and ``yw``
    ``(B, p * C, H, Wp / p)`` (position-major, see :class:`ShiftPadFold`); the region size
    and the shift.
    """

    @staticmethod
    def forward(ctx, ch, yh, yw, region_size, shift):
        b, height, width, c = ch.shape
        p = region_size
        yhn = yh.permute(0, 2, 3, 1).reshape(b, yh.shape[2], width, p, c)
        _unfold_height_(ch, yhn, height, p, shift, accumulate=True)
        ywn = yw.permute(0, 2, 3, 1).reshape(b, height, yw.shape[3] * p, c)
        _unfold_width_(ch, ywn, width, shift, accumulate=True)
        ctx.mark_dirty(ch)
        ctx.shapes = yh.shape, yw.shape
        ctx.region_size, ctx.shift = region_size, shift
        return ch

    @staticmethod
    def backward(ctx, grad_out):
        p, shift = ctx.region_size, ctx.shift
        g = grad_out.contiguous()
        b, height, width, c = g.shape
        (_, pc, hj, w), (_, _, h, wj) = ctx.shapes

        grad_yn = g.new_empty(b, hj, w, p, c)
        _fold_height_(grad_yn, g, height, p, shift)
        for r in range(height, hj * p):  # padding rows: not in the output
            grad_yn[:, r // p, :, r % p] = 0
        grad_yh = grad_yn.reshape(b, hj, w, pc).permute(0, 3, 1, 2)

        grad_frame = g.new_empty(b, h, wj * p, c)
        _fold_width_(grad_frame, g, width, shift)
        grad_frame[:, :, width:] = 0
        grad_yw = grad_frame.reshape(b, h, wj, pc).permute(0, 3, 1, 2)
        return g, grad_yh, grad_yw, None, None


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
