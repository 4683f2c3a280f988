"""The fast Hire module path equals the plain path (outputs and gradients), and stays finite
under float16 autocast."""
import itertools

import pytest
import torch
from conftest import TINY_ARCH, record_as_exported
from numeric import assert_rel_close, randomize_norms

from mmhire import HireMLP
from mmhire.models.layers import HireModule, branch_folding


def randomized_pair(embed_dims, region_size, shift, pad_mode, dtype=torch.float32):
    # random BN statistics too, so that folding them is exercised
    plain = randomize_norms(HireModule(embed_dims, region_size, shift, pad_mode, fast=False))
    fast = HireModule(embed_dims, region_size, shift, pad_mode, fast=True)
    fast.load_state_dict(plain.state_dict())
    return plain.to(dtype), fast.to(dtype)


CASES = list(itertools.product(['circular', 'constant', 'replicate'], [0, 1, 2, 3], [1, 2, 3, 4]))
# (batch, height, width): odd sizes, a 1x1 map, maps shorter than a region (pads larger than
# the map), a larger one; batches of 1, 2 and 3
SIZES = ((1, 7, 5), (3, 1, 1), (2, 2, 9), (3, 6, 11), (2, 13, 17))


@pytest.mark.parametrize('end', ['folded', 'unfolded'])
@pytest.mark.parametrize('mode', ['train', 'eval', 'eval-as-exported'])
@pytest.mark.parametrize('pad_mode,shift,region_size', CASES)
def test_fast_equals_plain(pad_mode, shift, region_size, mode, end, monkeypatch):
    """In float64, both ends of the fast path (``proj`` and the branch weights folded into
    per-image weights, or not) against the plain path, as an eager run computes them and as
    an export records them (in eval mode, as exports do): outputs, input and parameter
    gradients, BatchNorm statistics; batches of 1, 2 and 3 images, NCHW and channels-last."""
    training = mode == 'train'
    monkeypatch.setattr(branch_folding, 'folds_weights', lambda *args: end == 'folded')
    if mode == 'eval-as-exported':
        record_as_exported(monkeypatch)
    plain, fast = randomized_pair(8, region_size, shift, pad_mode, torch.float64)
    plain.train(training), fast.train(training)
    for batch, height, width in SIZES:
        x = torch.randn(batch, 8, height, width, dtype=torch.float64)
        if batch == 2:
            x = x.contiguous(memory_format=torch.channels_last)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = plain(xa), fast(xb)
        assert_rel_close(a, b, 1e-10, what=f'output at {batch}x{height}x{width}')
        weight = torch.randn_like(a)
        (a * weight).sum().backward()
        (b * weight).sum().backward()
        assert_rel_close(xa.grad, xb.grad, 1e-10, what='input gradient')
        for (name, pa), pb in zip(plain.named_parameters(), fast.parameters()):
            assert_rel_close(pa.grad, pb.grad, 1e-10, max(pa.grad.abs().max(), 1e-12), name)
        plain.zero_grad(), fast.zero_grad()
        for (name, ba), bb in zip(plain.named_buffers(), fast.buffers()):
            assert torch.allclose(ba, bb, rtol=1e-10, atol=0), name  # the same BN statistics


def test_fast_path_keeps_channels_last():
    fast = HireModule(8, 3, 1).eval()
    x = torch.randn(2, 8, 13, 17).contiguous(memory_format=torch.channels_last)
    assert fast(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('dtype,rel', [(torch.float32, 1e-4), (torch.float64, 1e-9)])
@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
def test_backbone_fast_equals_plain(training, dtype, rel):
    plain = HireMLP(arch=TINY_ARCH, fast=False)
    fast = HireMLP(arch=TINY_ARCH, fast=True)
    plain.init_weights()
    fast.load_state_dict(plain.state_dict())
    plain.to(dtype).train(training), fast.to(dtype).train(training)
    x = torch.randn(3, 3, 61, 45, dtype=dtype).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    outs_a, outs_b = plain(xa), fast(xb)
    for a, b in zip(outs_a, outs_b):
        assert_rel_close(a, b, rel)
    weights = [torch.randn_like(o) for o in outs_a]
    sum((o * w).sum() for o, w in zip(outs_a, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_b, weights)).backward()
    if dtype == torch.float64 or not training:
        # (float32 input gradients through many training-mode BN layers are ~1e-7 in size:
        # there round-off dominates, so they are judged in float64)
        assert_rel_close(xa.grad, xb.grad, rel)
    # Some gradients are exactly zero in exact arithmetic (a conv bias that feeds a
    # training-mode BN): judge every parameter against the largest gradient of the model.
    scale = max(p.grad.abs().max() for p in plain.parameters())
    for (name, pa), pb in zip(plain.named_parameters(), fast.parameters()):
        assert_rel_close(pa.grad, pb.grad, rel, scale, what=name)


def test_small_maps_keep_proj_unfolded():
    module = HireModule(8, 2)  # folding pays above C (p + 1) = 24 positions
    assert not branch_folding.folds_weights(module, 4, 6)
    assert branch_folding.folds_weights(module, 5, 5)


@pytest.mark.parametrize('size', [(200, 304), (256, 512)], ids=['800x1216', '1024x2048'])
def test_float16_autocast_with_large_activations(size, monkeypatch):
    """The first Hire module of HireMLP-T (C 64, region 4, shift 2) in eval, on the stage-1 map
    of an 800x1216 and a 1024x2048 image, inputs of mean 5 (trained activations are not
    unit-scale): under float16 autocast every path gives finite outputs within 1e-2 of float32,
    the formulation an export records included. Branch means formed as sums over the map
    overflowed float16 (65504) here."""
    torch.manual_seed(0)
    plain, fast = randomized_pair(64, 4, 2, 'circular')
    plain.eval(), fast.eval()
    x = (5 + torch.randn(1, 64, *size)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = plain(x)
        fused = HireModule(64, 4, 2).eval()
        fused.load_state_dict(fast.state_dict())
        fused.fuse()
        for name, module in (('plain', plain), ('fast', fast), ('fused', fused),
                             ('as exported', fast)):
            if name == 'as exported':
                record_as_exported(monkeypatch)
            with torch.autocast('cpu', dtype=torch.float16):
                got = module(x)
            assert got.dtype == torch.float16, name
            assert torch.isfinite(got).all(), f'{name}: non-finite outputs under float16'
            assert_rel_close(expected, got.float(), 1e-2, what=name)
