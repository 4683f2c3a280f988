"""The index definitions of the shift, the padding and the un-fold (region_rearrange.py), against
the released model's operators and by their documented meaning, for every length (pads larger
than the map included) and shift."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from mmhire.models.layers.region_rearrange import (cached_indices, crop_and_unshift, crop_index,
                                                   fold_regions, padded_length,
                                                   region_token_weights, shift_and_pad,
                                                   shift_pad_index, unfold_regions)


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
    assert shift_pad_index(2, 4, 1, 'circular').tolist() == [1, 0, 1, 0]  # [x1, x0], wrapped


def test_constant_and_replicate_padding():
    x = torch.tensor([1., 2., 3., 4., 5.]).reshape(1, 1, 1, 5)
    zeros = shift_and_pad(x, 3, 4, 1, 'constant')
    assert zeros.flatten().tolist() == [5., 1., 2., 3., 4., 0., 0., 0.]
    rep = shift_and_pad(x, 3, 4, 1, 'replicate')
    assert rep.flatten().tolist() == [5., 1., 2., 3., 4., 4., 4., 4.]


@pytest.mark.parametrize('pad_mode,region_size', itertools.product(
    ['circular', 'constant', 'replicate'], [1, 2, 3, 4]))
def test_indices_by_their_definition(pad_mode, region_size):
    """Every length from 1 to 13 and shifts 0-3 and 7 (beyond the map): padded position ``r``
    reads ``(r - shift) mod L`` (``'replicate'``: ``r`` clamped to ``L - 1`` first), and
    cropping reads ``(q + shift) mod L``, which undoes the shift and pad."""
    p = region_size
    for length, shift in itertools.product(range(1, 14), [0, 1, 2, 3, 7]):
        index = shift_pad_index(length, p, shift, pad_mode).tolist()
        assert len(index) == padded_length(length, p) and len(index) % p == 0
        for r, q in enumerate(index):
            source = min(r, length - 1) if pad_mode == 'replicate' else r
            assert q == (source - shift) % length
        x = torch.randn(2, 3, length, 4)
        padded = shift_and_pad(x, 2, p, shift, pad_mode)
        assert torch.equal(crop_and_unshift(padded, 2, length, shift), x)
        assert crop_index(length, shift).tolist() == [(q + shift) % length
                                                      for q in range(length)]


@pytest.mark.parametrize('length,p', [(1, 4), (5, 2), (7, 3), (8, 4), (13, 4)])
def test_region_token_weights(length, p):
    weights = region_token_weights(length, p, torch.float64)
    regions = padded_length(length, p) // p
    assert weights.shape == (p, regions)
    for i, j in itertools.product(range(p), range(regions)):
        assert weights[i, j] == (1 / length if j * p + i < length else 0)


def test_cached_indices_are_reused_in_eager_runs():
    a = cached_indices(shift_pad_index, 11, 3, 2, 'circular', device='cpu')
    b = cached_indices(shift_pad_index, 11, 3, 2, 'circular', device='cpu')
    assert a is b and torch.equal(a, shift_pad_index(11, 3, 2, 'circular'))


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
