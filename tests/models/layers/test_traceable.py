"""The traceable Hire path (what ONNX export, torch.export and torch.compile record; the gather
and the custom ops) equals the plain path: outputs and gradients, every pad mode, shift and
region size, maps smaller than a region and pads larger than the map."""
import itertools

import pytest
import torch
from numeric import assert_rel_close

from mmhire.models.layers import HireModule, compile_ops
from mmhire.models.layers.region_rearrange import (crop_and_unshift, fold_regions,
                                                   shift_and_pad, unfold_regions)
from mmhire.models.layers.traceable import (is_graph_capture, pad_to_min_size,
                                            shift_pad_fold_gather, unfold_crop_unshift_gather)

FORMULATIONS = {'gather': (shift_pad_fold_gather, unfold_crop_unshift_gather),
                'custom_ops': (compile_ops.shift_pad_fold, compile_ops.unfold_crop_unshift)}

CASES = list(itertools.product(['circular', 'constant', 'replicate'], [0, 1, 2, 3], [1, 2, 3, 4]))
# (height, width): odd sizes, a 1x1 map, maps shorter than a region (pads larger than the map)
SIZES = ((7, 5), (1, 1), (2, 9), (6, 11))


@pytest.mark.parametrize('formulation', FORMULATIONS)
@pytest.mark.parametrize('pad_mode,region_size', itertools.product(
    ['circular', 'constant', 'replicate'], [1, 2, 3, 4]))
def test_rearrangements_equal_the_plain_ones(pad_mode, region_size, formulation):
    """Every length from 1 (pads longer than the map) to 13, shifts 0-3 and 7 (beyond it)."""
    shift_pad_fold, unfold_crop_unshift = FORMULATIONS[formulation]
    p = region_size
    for dim, length, shift in itertools.product([2, 3], range(1, 14), [0, 1, 2, 3, 7]):
        size = [2, 3, 5, 4]
        size[dim] = length
        x = torch.randn(*size)
        folded = fold_regions(shift_and_pad(x, dim, p, shift, pad_mode), dim, p)
        assert torch.equal(shift_pad_fold(x, dim, p, shift, pad_mode), folded)
        y = torch.randn_like(folded)
        expected = crop_and_unshift(unfold_regions(y, dim, p), dim, length, shift)
        assert torch.equal(unfold_crop_unshift(y, dim, length, p, shift), expected)


@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('pad_mode,shift,region_size', CASES)
def test_traceable_equals_plain(pad_mode, shift, region_size, training):
    plain = HireModule(8, region_size, shift, pad_mode, fast=False).train(training)
    with torch.no_grad():
        for name, t in plain.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith('running_var')
                        else torch.randn_like(t) * 0.3)
    traced = HireModule(8, region_size, shift, pad_mode).train(training)
    traced.load_state_dict(plain.state_dict())
    for size in SIZES:
        x = torch.randn(2, 8, *size)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = plain(xa), traced.forward_traceable(xb)
        assert_rel_close(a, b, 1e-5)
        weight = torch.randn_like(a)
        (a * weight).sum().backward()
        (b * weight).sum().backward()
        assert_rel_close(xa.grad, xb.grad, 1e-5)
        for (name, pa), pb in zip(plain.named_parameters(), traced.parameters()):
            assert_rel_close(pa.grad, pb.grad, 1e-5), name
        plain.zero_grad(), traced.zero_grad()


def test_pad_to_min_size():
    x = torch.randn(1, 2, 1, 5)
    y = pad_to_min_size(x, 3)
    assert y.shape == (1, 2, 3, 5)
    assert torch.equal(y[:, :, :1], x) and not y[:, :, 1:].any()
    assert pad_to_min_size(torch.ones(1, 1, 4, 4), 3).shape == (1, 1, 4, 4)


def test_eager_run_is_not_graph_capture():
    assert not is_graph_capture()
