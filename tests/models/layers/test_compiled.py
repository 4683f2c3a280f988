"""The formulation torch.compile runs (:mod:`mmhire.models.layers.compiled`), run eagerly:
outputs and gradients against a float64 run of the plain path for every pad mode, shift 0-3
and region size 1-4, train and eval, per-image convolutions and batched products, folded and
not, and maps small enough to take the graph path instead. (Compiled runs of it, static and
dynamic, are in tests/models/backbones/test_hire_mlp_compile.py.)"""
import itertools

import pytest
import torch
from numeric import draw_away_from_kinks

from mmhire.models.layers import HireModule
from mmhire.models.layers.compiled import hire_compiled, takes_compiled_path

CASES = list(itertools.product(['circular', 'constant', 'replicate'], [0, 1, 2, 3], [1, 2, 3, 4]))
# (height, width): odd sizes, sides equal to the region size, and (2, 9) / (1, 1): shorter
# than a region or the shift for most cases, which take the graph path
SIZES = ((7, 5), (4, 6), (6, 11), (2, 9), (1, 1))


def _rel_error(got, expected):
    return ((got.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def _module(pad_mode, shift, region_size, training, dtype):
    torch.manual_seed(region_size * 16 + shift)
    module = HireModule(8, region_size, shift, pad_mode, fast=False).train(training)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith('running_var')
                        else torch.randn_like(t) * 0.3)
    return module.to(dtype)


@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('pad_mode,shift,region_size', CASES)
def test_compiled_formulation_equals_plain(pad_mode, shift, region_size, training):
    """Float64 (the arithmetic, not rounding): within 1e-10 of the largest value, batch 2,
    channels-last inputs as the fast backbone gives them."""
    module = _module(pad_mode, shift, region_size, training, torch.double)
    for size in [s for s in SIZES if not (training and s == (1, 1))]:
        x = torch.randn(2, 8, *size, dtype=torch.double).contiguous(
            memory_format=torch.channels_last)
        weight = torch.randn(2, 8, *size, dtype=torch.double)
        results = {}
        for name, run in (('plain', module._forward_plain),
                          ('per image', lambda t: hire_compiled(module, t, batched=False)),
                          ('batched', lambda t: hire_compiled(module, t, batched=True))):
            for fold in (True, False):
                module.graph_fold = fold
                xi = x.clone().requires_grad_()
                out = run(xi)
                grads = torch.autograd.grad((out * weight).sum(), [xi] + list(module.parameters()))
                results[name, fold] = [out.detach()] + list(grads)
        expected = results.pop(('plain', True))
        names = ['output', 'input gradient'] + [n for n, _ in module.named_parameters()]
        for variant, got in results.items():
            for name, e, g in zip(names, expected, got):
                assert _rel_error(g, e) < 1e-10, (variant, name, size)


def test_compiled_formulation_float32_and_layout():
    """Float32 against float64 as close as the plain path's own float32 run, and the result
    channels-last (the next 1x1 convolution's fastest layout), for batch 1 and 3."""
    reference = _module('circular', 2, 4, True, torch.double)
    module = _module('circular', 2, 4, True, torch.float)
    for batch in (1, 3):
        x, = draw_away_from_kinks(reference, lambda: (torch.randn(batch, 8, 13, 17).double(),))
        x = x.contiguous(memory_format=torch.channels_last)
        expected = reference._forward_plain(x)
        plain = module._forward_plain(x.float())
        got = hire_compiled(module, x.float())
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert _rel_error(got, expected) <= max(3e-6, 3 * _rel_error(plain, expected))


def test_small_maps_take_the_graph_path():
    module = HireModule(8, 3, 2)
    assert takes_compiled_path(module, 3, 3) and takes_compiled_path(module, 5, 40)
    assert not takes_compiled_path(module, 2, 40)  # shorter than a region
    assert not takes_compiled_path(HireModule(8, 2, 3), 3, 9)  # not longer than the shift


def _recorded_ops(module, x, **compile_args):
    """The names of the functions and methods dynamo records for ``module(x)`` (no inductor)."""
    names = []

    def backend(gm, example_inputs):
        names.extend(str(n.target) for n in gm.graph.nodes
                     if n.op in ('call_function', 'call_method'))
        return gm.forward

    torch._dynamo.reset()
    try:
        torch.compile(module, backend=backend, fullgraph=True, **compile_args)(x)
    finally:
        torch._dynamo.reset()
    return ' '.join(names)


def test_torch_compile_records_this_formulation():
    """A static compile records the slices (no gather); ``dynamic=True`` and maps smaller
    than a region record the graph path's gathers; so does torch.export."""
    module = HireModule(8, 3, 1).eval()
    x = torch.randn(1, 8, 9, 11).contiguous(memory_format=torch.channels_last)
    assert 'index_select' not in _recorded_ops(module, x)
    assert 'index_select' in _recorded_ops(module, x, dynamic=True)
    assert 'index_select' in _recorded_ops(module, torch.randn(1, 8, 2, 11))
    exported = torch.export.export(module, (x,))
    assert 'index_select' in str(exported.graph)
