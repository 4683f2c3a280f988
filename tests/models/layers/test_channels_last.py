"""The fast path's channels-last rearrangements against the plain ones, values and gradients."""
import itertools

import pytest
import torch

from mmhire.models.layers.channels_last import AddBranches, ChannelsLastGrad, shift_pad_fold
from mmhire.models.layers.region_rearrange import (PAD_MODES, crop_and_unshift, fold_regions,
                                                   shift_and_pad, unfold_regions)

CL = torch.channels_last


def position_major(folded, region_size):
    """Reorder folded channels from the plain path's ``c * p + i`` to ``i * C + c``."""
    b, pc, h, w = folded.shape
    p = region_size
    return folded.reshape(b, pc // p, p, h, w).transpose(1, 2).reshape(b, pc, h, w)


def reference_fold(x, dim, p, shift, pad_mode):
    return position_major(fold_regions(shift_and_pad(x, dim, p, shift, pad_mode), dim, p), p)


# (H, W) with maps shorter than the region (1 row, pad > length) and odd sizes
SIZES = ((1, 5), (5, 1), (2, 7), (7, 6), (9, 4))


@pytest.mark.parametrize('pad_mode,dim', itertools.product(PAD_MODES, (2, 3)))
def test_shift_pad_fold_equals_plain_rearrangement(pad_mode, dim):
    torch.manual_seed(0)
    for (h, w), p, shift in itertools.product(SIZES, (1, 2, 3, 4), (0, 1, 2, 3, 7)):
        x = torch.randn(2, 3, h, w, dtype=torch.float64).contiguous(memory_format=CL)
        x.requires_grad_()
        ref_x = x.detach().clone().requires_grad_()
        out = shift_pad_fold(x, dim, p, shift, pad_mode)
        ref = reference_fold(ref_x, dim, p, shift, pad_mode)
        case = f'size {(h, w)}, p={p}, shift={shift}'
        assert out.shape == ref.shape, case
        assert torch.equal(out, ref), case
        assert out.is_contiguous(memory_format=CL), case
        grad = torch.randn_like(ref)
        out.backward(grad)
        ref.backward(grad)
        torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-12, atol=1e-12, msg=case)
        assert x.grad.is_contiguous(memory_format=CL), case


def test_shift_pad_fold_gradcheck():
    for pad_mode, dim, shift in (('circular', 2, 2), ('replicate', 3, 1), ('constant', 2, 3),
                                 ('circular', 3, 4)):
        x = torch.randn(1, 2, 5, 4, dtype=torch.float64).contiguous(memory_format=CL)
        x.requires_grad_()
        assert torch.autograd.gradcheck(
            lambda t: shift_pad_fold(t, dim, 3, shift, pad_mode), (x,)), (pad_mode, dim)


def test_width_fold_without_shift_or_padding_is_a_view():
    x = torch.randn(1, 4, 3, 6).contiguous(memory_format=CL)
    folded = shift_pad_fold(x, 3, 2, 0, 'circular')
    assert folded.data_ptr() == x.data_ptr()
    assert torch.equal(folded, reference_fold(x, 3, 2, 0, 'circular'))


@pytest.mark.parametrize('shift', (0, 1, 2, 3))
def test_add_branches_equals_unfold_crop_unshift(shift):
    torch.manual_seed(shift)
    b, c, h, w, p = 2, 3, 7, 5, 3
    hp, wp = 9, 6
    ch = torch.randn(b, c, h, w, dtype=torch.float64)
    yh = torch.randn(b, p * c, hp // p, w, dtype=torch.float64)  # position-major channels
    yw = torch.randn(b, p * c, h, wp // p, dtype=torch.float64)

    def channel_major(y):
        bb, pc, hh, ww = y.shape
        return y.reshape(bb, p, pc // p, hh, ww).transpose(1, 2).reshape(bb, pc, hh, ww)

    expected = (ch + crop_and_unshift(unfold_regions(channel_major(yh), 2, p), 2, h, shift)
                + crop_and_unshift(unfold_regions(channel_major(yw), 3, p), 3, w, shift))
    inputs = [t.contiguous(memory_format=CL).requires_grad_() for t in (ch, yh, yw)]
    out = AddBranches.apply(inputs[0].permute(0, 2, 3, 1).clone(), inputs[1], inputs[2], p,
                            shift)
    torch.testing.assert_close(out.permute(0, 3, 1, 2), expected)

    assert torch.autograd.gradcheck(
        lambda a, y1, y2: AddBranches.apply(a.permute(0, 2, 3, 1).clone(), y1, y2, p, shift),
        inputs)


def test_channels_last_grad_keeps_strides_and_converts_gradients():
    x = torch.randn(1, 4, 3, 5).contiguous(memory_format=CL).requires_grad_()
    y = ChannelsLastGrad.apply(x)
    assert y.stride() == x.stride()  # a size-1 batch keeps its stride: still channels-last
    y.backward(torch.randn(1, 4, 3, 5))  # an NCHW gradient
    assert x.grad.is_contiguous(memory_format=CL)
