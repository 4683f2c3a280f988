"""The fast Hire module path equals the plain path (outputs and gradients)."""
import itertools

import pytest
import torch
from conftest import TINY_ARCH
from numeric import assert_rel_close

from mmhire import HireMLP
from mmhire.models.layers import HireModule


def randomized_pair(embed_dims, region_size, shift, pad_mode):
    plain = HireModule(embed_dims, region_size, shift, pad_mode, fast=False)
    with torch.no_grad():  # random BN statistics too, so that folding them is exercised
        for name, t in plain.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith('running_var')
                        else torch.randn_like(t) * 0.3)
    fast = HireModule(embed_dims, region_size, shift, pad_mode, fast=True)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


CASES = list(itertools.product(['circular', 'constant', 'replicate'], [0, 1, 2, 3], [1, 2, 3, 4]))


@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('pad_mode,shift,region_size', CASES)
def test_fast_equals_plain(pad_mode, shift, region_size, training):
    plain, fast = randomized_pair(8, region_size, shift, pad_mode)
    plain.train(training), fast.train(training)
    for size, channels_last in (((7, 5), False), ((1, 9), False), ((6, 11), True)):
        x = torch.randn(2, 8, *size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        # (the fast path called directly: forward would take the plain path on maps this small)
        a, b = plain(xa), fast._forward_fast(xb)
        assert_rel_close(a, b)
        weight = torch.randn_like(a)
        (a * weight).sum().backward()
        (b * weight).sum().backward()
        assert_rel_close(xa.grad, xb.grad)
        for (name, pa), pb in zip(plain.named_parameters(), fast.parameters()):
            assert_rel_close(pa.grad, pb.grad, what=name)
        plain.zero_grad(), fast.zero_grad()
        if training:  # both moved their BN statistics the same way
            for ba, bb in zip(plain.buffers(), fast.buffers()):
                assert_rel_close(ba.float(), bb.float())


@pytest.mark.parametrize('dtype,rel', [(torch.float32, 1e-4), (torch.float64, 1e-9)])
@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
def test_backbone_fast_equals_plain(training, dtype, rel):
    plain = HireMLP(arch=TINY_ARCH, fast=False)
    fast = HireMLP(arch=TINY_ARCH, fast=True)
    plain.init_weights()
    fast.load_state_dict(plain.state_dict())
    plain.to(dtype).train(training), fast.to(dtype).train(training)
    x = torch.randn(2, 3, 61, 45, dtype=dtype).contiguous(memory_format=torch.channels_last)
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


def test_small_maps_take_the_plain_path():
    module = HireModule(8, 2)  # the fast path pays above C (p + 1) = 24 positions
    assert not module.takes_fast_path(4, 6) and module.takes_fast_path(5, 5)
    assert not HireModule(8, 2, fast=False).takes_fast_path(100, 100)
