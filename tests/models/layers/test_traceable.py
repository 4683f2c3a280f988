"""The traceable Hire path (what ONNX export, torch.export and torch.compile record) equals the
plain path: outputs and gradients, every pad mode, shift and region size, maps smaller than a
region and pads larger than the map."""
import itertools

import pytest
import torch
from numeric import assert_rel_close

from mmhire.models.layers import HireModule
from mmhire.models.layers.region_rearrange import gather_indices
from mmhire.models.layers.traceable import (is_graph_capture, pad_to_min_size,
                                            shift_pad_index)

CASES = list(itertools.product(['circular', 'constant', 'replicate'], [0, 1, 2, 3], [1, 2, 3, 4]))
# (height, width): odd sizes, a 1x1 map, maps shorter than a region (pads larger than the map)
SIZES = ((7, 5), (1, 1), (2, 9), (6, 11))


@pytest.mark.parametrize('pad_mode,shift,region_size', CASES)
def test_shift_pad_index_matches_gather_indices(pad_mode, shift, region_size):
    for length in (1, 2, 3, 5, 8, 13):
        expected = gather_indices(length, region_size, shift, pad_mode)
        index = shift_pad_index(length, region_size, shift, pad_mode)
        if pad_mode == 'constant':  # the padding is zeroed by a mask, not read off an index
            assert torch.equal(index[:length], expected[:length])
            assert len(index) == len(expected)
        else:
            assert torch.equal(index, expected)


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
