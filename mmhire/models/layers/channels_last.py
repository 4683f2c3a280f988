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


def in_channels_position_major(weight: torch.Tensor, region_size: int) -> torch.Tensor:
    """A 1x1 conv weight over ``C * p`` folded channels, reordered from ``c * p + i`` to
    ``i * C + c``."""
    out_ch, in_ch = weight.shape[:2]
    return weight.reshape(out_ch, in_ch // region_size, region_size).transpose(1, 2).reshape(
        out_ch, in_ch, 1, 1)


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


def _height_runs(length: int, region_size: int, shift: int):
    """Where the height branch's data rows go: ``(i, j0, count, q0)`` for each token ``i`` of a
    region, meaning the padded rows ``r = j * p + i`` for ``j = j0 .. j0 + count - 1`` (all
    ``r < length``, the rest is padding) go to output rows ``q0, q0 + p, ...``. The un-shift
    ``q = (r - shift) mod length`` splits each token's rows in at most two runs."""
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
    """Where the width branch's data columns go: ``(out_cols, frame_cols)`` slice pairs (the
    un-shift is a roll, two slices at most)."""
    s = shift % length
    pieces = [(slice(0, length - s), slice(s, length))]
    if s:
        pieces.append((slice(length - s, length), slice(0, s)))
    return pieces


def add_height_branch_(out: torch.Tensor, y: torch.Tensor, length: int, region_size: int,
                       shift: int) -> None:
    """``out += crop_and_unshift(unfold(y))`` along the height, in place, no copies.

    ``out``: ``(B, H, W, C)`` (NHWC); ``y``: a region branch's output ``(B, p * C, Hp / p, W)``
    (position-major channels).
    """
    b, pc, hj, w = y.shape
    p = region_size
    yn = y.permute(0, 2, 3, 1).reshape(b, hj, w, p, pc // p)
    for i, j0, count, q0 in _height_runs(length, p, shift):
        out[:, q0:q0 + (count - 1) * p + 1:p].add_(yn[:, j0:j0 + count, :, i])


def add_width_branch_(out: torch.Tensor, y: torch.Tensor, length: int, region_size: int,
                      shift: int) -> None:
    """:func:`add_height_branch_` along the width: the unfold is a view, the un-shift two
    slices."""
    b, pc, h, wj = y.shape
    p = region_size
    frame = y.permute(0, 2, 3, 1).reshape(b, h, wj * p, pc // p)  # (B, H, Wp, C)
    for out_cols, frame_cols in _width_pieces(length, shift):
        out[:, :, out_cols].add_(frame[:, :, frame_cols])


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
    total = hidden.sum(dim=(2, 3))  # (B, K)
    last = hidden.narrow(dim, regions - 1, 1).sum(dim=(2, 3))
    # per token i: the sum of the hidden map over the regions whose token i holds data
    token_sums = total.unsqueeze(1) - last.unsqueeze(1) * (
        torch.arange(p, device=hidden.device) >= rem).to(hidden.dtype).reshape(1, p, 1)
    counts = torch.full((p,), regions, dtype=hidden.dtype, device=hidden.device)
    counts[rem:] -= 1
    out = torch.einsum('cik,bik->bc', weight, token_sums) + (bias * counts).sum(1) * across
    return out / (length * across)


class AddBranches(torch.autograd.Function):
    """``ch += unfold_h(yh) + unfold_w(yw)`` on NHWC memory, in place, with its own backward.

    Forward adds the height and width branches into ``ch`` through strided views
    (:func:`add_height_branch_`, :func:`add_width_branch_`): no un-fold, crop or un-shift
    copies. Autograd would answer each of those in-place slice updates with a full-size zero
    tensor; this backward writes each branch's gradient once, straight into its folded layout
    (the padded positions get zeros).

    Inputs: ``ch`` ``(B, H, W, C)``; ``yh`` ``(B, p * C, Hp / p, W)`` and ``yw``
    ``(B, p * C, H, Wp / p)`` (position-major, see :func:`fold_height_nhwc`); the region size
    and the shift.
    """

    @staticmethod
    def forward(ctx, ch, yh, yw, region_size, shift):
        height, width = ch.shape[1:3]
        add_height_branch_(ch, yh, height, region_size, shift)
        add_width_branch_(ch, yw, width, region_size, shift)
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

        grad_yn = g.new_zeros(b, hj, w, p, c)
        for i, j0, count, q0 in _height_runs(height, p, shift):
            grad_yn[:, j0:j0 + count, :, i] = g[:, q0:q0 + (count - 1) * p + 1:p]
        grad_yh = grad_yn.reshape(b, hj, w, pc).permute(0, 3, 1, 2)

        grad_frame = g.new_zeros(b, h, wj * p, c)
        for out_cols, frame_cols in _width_pieces(width, shift):
            grad_frame[:, :, frame_cols] = g[:, :, out_cols]
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
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)
