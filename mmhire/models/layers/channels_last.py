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




def _height_runs(length, region_size, shift):
    s = shift % length
    return [(i, j0, count, q0) for i in range(region_size)
            for j0, count, q0 in _runs(length, region_size, s, i)]


class FuseBranches(torch.autograd.Function):
    """``out = a2 * ch + a0 * unfold_h(yh) + a1 * unfold_w(yw)`` on NHWC memory, with its own
    backward.

    Forward adds the height and width branches into the output through strided views
    (:func:`add_height_branch_`, :func:`add_width_branch_`). Autograd would answer every one
    of those in-place slice updates with a full-size zero tensor; this backward writes each
    branch's gradient once, straight into its folded layout, and reduces the branch weights'
    gradients from the same slices.

    Inputs: ``ch`` ``(B, H, W, C)``; ``yh`` ``(B, p * C, Hp / p, W)`` and ``yw``
    ``(B, p * C, H, Wp / p)`` (position-major, see :func:`fold_height_nhwc`); ``a``
    ``(3, B, 1, 1, C)``; the region size and shift.
    """

    @staticmethod
    def forward(ctx, ch, yh, yw, a, region_size, shift):
        height, width = ch.shape[1:3]
        out = ch * a[2]
        add_height_branch_(out, yh, a[0], height, region_size, shift)
        add_width_branch_(out, yw, a[1], width, region_size, shift)
        ctx.save_for_backward(ch, yh, yw, a)
        ctx.region_size, ctx.shift = region_size, shift
        return out

    @staticmethod
    def backward(ctx, grad_out):
        ch, yh, yw, a = ctx.saved_tensors
        p, shift = ctx.region_size, ctx.shift
        g = grad_out.contiguous()
        b, height, width, c = g.shape
        grad_a = torch.empty_like(a)

        grad_ch = g * a[2]
        grad_a[2] = (g * ch).sum(dim=(1, 2), keepdim=True)

        # height branch: gradient in the folded layout; padded rows get none
        _, pc, hj, w = yh.shape
        yn = yh.permute(0, 2, 3, 1).reshape(b, hj, w, p, c)
        grad_yn = torch.zeros(b, hj, w, p, c, dtype=g.dtype, device=g.device)
        ga0 = torch.zeros_like(grad_a[0])
        for i, j0, count, q0 in _height_runs(height, p, shift):
            src = g[:, q0:q0 + (count - 1) * p + 1:p]
            torch.mul(src, a[0], out=grad_yn[:, j0:j0 + count, :, i])
            ga0 += (src * yn[:, j0:j0 + count, :, i]).sum(dim=(1, 2), keepdim=True)
        grad_a[0] = ga0
        grad_yh = grad_yn.reshape(b, hj, w, pc).permute(0, 3, 1, 2)

        # width branch: the un-shift is two slices of the frame, padded columns get none
        _, pc, h, wj = yw.shape
        frame = yw.permute(0, 2, 3, 1).reshape(b, h, wj * p, c)
        grad_frame = torch.zeros(b, h, wj * p, c, dtype=g.dtype, device=g.device)
        s = shift % width
        pieces = [(slice(0, width - s), slice(s, width))] + (
            [(slice(width - s, width), slice(0, s))] if s else [])
        ga1 = torch.zeros_like(grad_a[1])
        for out_cols, frame_cols in pieces:
            src = g[:, :, out_cols]
            torch.mul(src, a[1], out=grad_frame[:, :, frame_cols])
            ga1 += (src * frame[:, :, frame_cols]).sum(dim=(1, 2), keepdim=True)
        grad_a[1] = ga1
        grad_yw = grad_frame.reshape(b, h, wj, pc).permute(0, 3, 1, 2)
        return grad_ch, grad_yh, grad_yw, grad_a, None, None


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
