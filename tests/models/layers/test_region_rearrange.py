import pytest
import torch
import torch.nn.functional as F

from mmhire.models.layers.region_rearrange import (crop_and_unshift, fold_regions, gather_indices,
                                                   padded_length, shift_and_pad, unfold_regions)


@pytest.mark.parametrize('dim', [2, 3])
@pytest.mark.parametrize('length,p,s', [(7, 3, 0), (7, 3, 2), (6, 2, 1), (9, 4, 3), (5, 5, 4)])
def test_circular_matches_roll_and_pad(dim, length, p, s):
    # Where F.pad works, the gather equals the released roll + circular pad.
    shape = [2, 3, 5, 5]
    shape[dim] = length
    x = torch.randn(shape)
    pad = padded_length(length, p) - length
    expected = torch.roll(x, s, dims=dim)
    pads = (0, 0, 0, pad) if dim == 2 else (0, pad, 0, 0)
    expected = F.pad(expected, pads, mode='circular') if pad else expected
    assert torch.equal(shift_and_pad(x, dim, p, s, 'circular'), expected)


def test_circular_wraps_when_pad_exceeds_map():
    # 1 row, region 3: F.pad(circular) refuses; we repeat the row (wrap modulo the map size).
    x = torch.arange(2.).reshape(1, 1, 1, 2)
    out = shift_and_pad(x, 2, 3, 0, 'circular')
    assert out.shape == (1, 1, 3, 2)
    assert torch.equal(out, x.expand(1, 1, 3, 2))
    idx = gather_indices(2, 4, 1, 'circular')
    assert idx.tolist() == [1, 0, 1, 0]  # shifted map [x1, x0], then wrapped


def test_constant_and_replicate_padding():
    x = torch.tensor([1., 2., 3., 4., 5.]).reshape(1, 1, 1, 5)
    zeros = shift_and_pad(x, 3, 4, 1, 'constant')
    assert zeros.flatten().tolist() == [5., 1., 2., 3., 4., 0., 0., 0.]
    rep = shift_and_pad(x, 3, 4, 1, 'replicate')
    assert rep.flatten().tolist() == [5., 1., 2., 3., 4., 4., 4., 4.]


@pytest.mark.parametrize('dim', [2, 3])
@pytest.mark.parametrize('p', [1, 2, 3, 4])
def test_fold_channel_order_and_inverse(dim, p):
    x = torch.randn(2, 3, 4 * p, 4 * p)
    folded = fold_regions(x, dim, p)
    # channel c * p + i holds position i of each group
    c, i, g = 2, p - 1, 1
    if dim == 2:
        assert torch.equal(folded[:, c * p + i, g, :], x[:, c, g * p + i, :])
    else:
        assert torch.equal(folded[:, c * p + i, :, g], x[:, c, :, g * p + i])
    assert torch.equal(unfold_regions(folded, dim, p), x)


@pytest.mark.parametrize('mode', ['circular', 'constant', 'replicate'])
@pytest.mark.parametrize('length,p,s', [(1, 3, 0), (1, 3, 2), (2, 4, 3), (7, 3, 2), (8, 2, 1)])
def test_crop_and_unshift_inverts_shift_and_pad(mode, length, p, s):
    x = torch.randn(1, 2, length, 3)
    y = shift_and_pad(x, 2, p, s, mode)
    assert y.shape[2] % p == 0
    assert torch.equal(crop_and_unshift(y, 2, length, s), x)
