"""The graph path (what ONNX export, torch.export and torch.compile record) equals the plain
path: its index arithmetic, its branch means, the whole module's outputs and gradients for every
pad mode, shift and region size, maps smaller than a region and pads larger than the map; and
its float32 gradients are as accurate as the eager fast path's, measured against float64."""
import itertools

import pytest
import torch
from conftest import TINY_ARCH
from numeric import assert_rel_close, draw_away_from_kinks, randomize_norms

from mmhire import HireMLP
from mmhire.models.layers import HireModule
from mmhire.models.layers.region_rearrange import (crop_and_unshift, shift_and_pad,
                                                   unfold_regions)
from mmhire.models.layers.traceable import (is_graph_capture, pad_to_min_size,
                                            region_branch_mean, shift_pad_index, unfold_index)

CASES = list(itertools.product(['circular', 'constant', 'replicate'], [0, 1, 2, 3], [1, 2, 3, 4]))
# (height, width): odd sizes, a 1x1 map, maps shorter than a region (pads larger than the map)
SIZES = ((7, 5), (1, 1), (2, 9), (6, 11))


@pytest.mark.parametrize('pad_mode,region_size', itertools.product(
    ['circular', 'constant', 'replicate'], [1, 2, 3, 4]))
def test_indices_equal_the_plain_rearrangements(pad_mode, region_size):
    """Every length from 1 (pads longer than the map) to 13, shifts 0-3 and 7 (beyond it): a
    row gather by :func:`shift_pad_index` is the plain shift and pad, and a row gather by
    :func:`unfold_index` of a branch output's channel blocks is the plain un-fold, crop and
    un-shift."""
    p = region_size
    for length, shift in itertools.product(range(1, 14), [0, 1, 2, 3, 7]):
        x = torch.randn(2, 3, length, 4)
        padded = x.index_select(2, shift_pad_index(length, p, shift, pad_mode))
        if pad_mode == 'constant':
            padded[:, :, length:] = 0
        assert torch.equal(padded, shift_and_pad(x, 2, p, shift, pad_mode))
        regions = padded.shape[2] // p
        y = torch.randn(2, 3 * p, regions, 4)  # a branch output, channel c * p + i
        expected = crop_and_unshift(unfold_regions(y, 2, p), 2, length, shift)
        got = y.reshape(2, 3, p * regions, 4).index_select(
            2, unfold_index(length, regions, p, shift))
        assert torch.equal(got, expected)


@pytest.mark.parametrize('length,region_size', [(1, 4), (5, 2), (7, 3), (8, 4), (13, 4)])
def test_region_branch_mean(length, region_size):
    p, k, c = region_size, 5, 6
    regions = -(-length // p)
    hidden = torch.randn(2, k, regions, 3, dtype=torch.double)
    weight, bias = torch.randn(c, p, k, dtype=torch.double), torch.randn(c, p, dtype=torch.double)
    out = torch.nn.functional.conv2d(hidden, weight.reshape(c * p, k, 1, 1), bias.reshape(-1))
    expected = unfold_regions(out, 2, p)[:, :, :length].mean(dim=(2, 3))
    assert_rel_close(expected, region_branch_mean(hidden, weight, bias, length), 1e-12)


def _rel_error(got, expected):
    return ((got.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('pad_mode,shift,region_size', CASES)
def test_traceable_equals_plain(pad_mode, shift, region_size, training):
    """Outputs, input and parameter gradients of the graph path, with and without folded
    weights (``graph_fold``), against a float64 run of the plain path: within 3e-5 of the
    largest value, or no further off than three times the float32 plain path's own error
    (float32 rounding: measured up to 1.2e-5 against the plain path's 6e-6 for a bias). (No 1x1
    map in training mode: there a region MLP's BatchNorm sees two values per channel, and its
    first weight's gradient is zero up to rounding, about 1e-4 of its float64 value in both
    paths.)"""
    torch.manual_seed(region_size * 16 + shift)
    plain = HireModule(8, region_size, shift, pad_mode, fast=False).train(training)
    with torch.no_grad():
        for name, t in plain.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith('running_var')
                        else torch.randn_like(t) * 0.3)
    reference = HireModule(8, region_size, shift, pad_mode, fast=False).double()
    reference.load_state_dict(plain.state_dict())
    reference.train(training)
    for size in [s for s in SIZES if not (training and s == (1, 1))]:
        # float32 values; none at a ReLU kink, where float32 and float64 may take different
        # sides and a region's gradient differs by its own size (not rounding error)
        x, = draw_away_from_kinks(reference, lambda: (torch.randn(2, 8, *size).double(),))
        weight = torch.randn(2, 8, *size, dtype=torch.double)
        results = {}
        for name, module, run, dtype in (
                ('reference', reference, reference, torch.double),
                ('plain', plain, plain, torch.float),
                ('graph', plain, plain.forward_traceable, torch.float),
                ('graph, not folded', plain, plain.forward_traceable, torch.float)):
            plain.graph_fold = name != 'graph, not folded'
            xi = x.to(dtype).requires_grad_()
            out = run(xi)
            grads = torch.autograd.grad((out * weight.to(dtype)).sum(),
                                        [xi] + list(module.parameters()))
            results[name] = [out.detach()] + list(grads)
        names = ['output', 'input gradient'] + [n for n, _ in plain.named_parameters()]
        for name, expected, got_plain, *got_graph in zip(names, *results.values()):
            plain_error = _rel_error(got_plain, expected)
            for variant, got in zip(('folded', 'not folded'), got_graph):
                error = _rel_error(got, expected)
                assert error < max(3e-5, 3 * plain_error), (variant, name, size, error,
                                                            plain_error)


def test_pad_to_min_size():
    x = torch.randn(1, 2, 1, 5)
    y = pad_to_min_size(x, 3)
    assert y.shape == (1, 2, 3, 5)
    assert torch.equal(y[:, :, :1], x) and not y[:, :, 1:].any()
    assert pad_to_min_size(torch.ones(1, 1, 4, 4), 3).shape == (1, 1, 4, 4)


def test_eager_run_is_not_graph_capture():
    assert not is_graph_capture()


def _backbone_grads(model, x, projections, graph_path):
    """Input and parameter gradients of ``sum(out * projection)``, in training mode; with
    ``graph_path`` the Hire modules run :func:`~mmhire.models.layers.traceable.hire_graph`
    eagerly, as a recorder would see them."""
    from unittest import mock

    import mmhire.models.backbones.hire_mlp as backbone_module
    import mmhire.models.layers.hire_module as hire_module
    x = x.clone().requires_grad_()
    with mock.patch.object(hire_module, 'is_graph_capture', lambda: graph_path), \
            mock.patch.object(backbone_module, 'is_graph_capture', lambda: graph_path):
        outs = model.train()(x)
    sum((o * w).sum() for o, w in zip(outs, projections)).backward()
    return [x.grad] + [p.grad for p in model.parameters()]


def test_graph_path_gradients_against_float64():
    """Float32 gradients of the graph path, measured against a float64 run of the plain path:
    the median over the gradient tensors of ``|g32 - g64| / |g64|`` is as small as the eager
    fast path's. (Measured on HireMLP-T, 2x3x224x288: plain 2.7e-6, fast 4.4e-6, graph 4.3e-6;
    here TINY_ARCH.) Tensors whose float64 gradient is zero (a bias before a training-mode
    BatchNorm) have no relative error and are left out."""
    import statistics
    torch.manual_seed(0)
    base = randomize_norms(HireMLP(arch=TINY_ARCH, fast=False))
    x = torch.randn(2, 3, 157, 203)
    ref = HireMLP(arch=TINY_ARCH, fast=False).double()
    ref.load_state_dict(base.state_dict())
    with torch.no_grad():
        projections = [torch.randn_like(o) for o in ref.train()(x.double())]
    expected = _backbone_grads(ref, x.double(), projections, graph_path=False)
    medians = {}
    for path in ('fast', 'graph'):
        model = HireMLP(arch=TINY_ARCH)
        model.load_state_dict(base.state_dict())
        got = _backbone_grads(model, x, [p.float() for p in projections], path == 'graph')
        errors = [((g.double() - e).norm() / e.norm()).item() for g, e in zip(got, expected)
                  if e.norm() > 1e-9 * expected[0].norm()]
        medians[path] = statistics.median(errors)
    assert medians['graph'] < 3e-5, medians
    assert medians['graph'] <= 3 * medians['fast'], medians
