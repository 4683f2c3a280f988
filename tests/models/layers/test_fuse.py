"""The fused (deploy) switch: BatchNorms folded into convolutions, same outputs and input grads."""
import copy
import itertools

import pytest
import torch
from conftest import TINY_ARCH
from numeric import assert_rel_close, randomize_norms
from torch.nn.modules.batchnorm import _BatchNorm

from mmhire import HireMLP
from mmhire.models.layers import HireBlock
from mmhire.models.layers.fuse import fuse_bn_conv, fuse_conv_bn


def compare(model, fused, x):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = model(xa), fused(xb)
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    for ya, yb in zip(a, b):
        assert_rel_close(ya, yb)
    weights = [torch.randn_like(y) for y in a]
    sum((y * w).sum() for y, w in zip(a, weights)).backward()
    sum((y * w).sum() for y, w in zip(b, weights)).backward()
    assert_rel_close(xa.grad, xb.grad)


@pytest.mark.parametrize('pad_mode,shift,region_size',
                         list(itertools.product(['circular', 'constant', 'replicate'],
                                                [0, 1, 2, 3], [1, 2, 3, 4])))
def test_fused_block_equals_block(pad_mode, shift, region_size):
    block = randomize_norms(HireBlock(8, 2., region_size, shift, pad_mode=pad_mode)).eval()
    fused = copy.deepcopy(block)
    fused.fuse()
    left = sum(isinstance(m, _BatchNorm) for m in fused.modules())
    assert left == (1 if pad_mode == 'constant' else 0)  # norm1 stays in front of zero padding
    for size, channels_last in (((7, 5), False), ((1, 9), False), ((6, 11), True)):
        x = torch.randn(2, 8, *size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        compare(block, fused, x)


@pytest.mark.parametrize('pad_mode', ['circular', 'constant', 'replicate'])
def test_fused_backbone_equals_backbone(pad_mode):
    model = randomize_norms(HireMLP(arch=TINY_ARCH, pad_mode=pad_mode)).eval()
    fused = copy.deepcopy(model).fuse()
    assert fused.fused and fused.fuse() is fused  # idempotent
    # all in eval mode, the modules fusing made too (compile and export check every module)
    assert not any(m.training for m in fused.modules())
    for size in ((61, 45), (33, 97), (5, 3)):
        compare(model, fused, torch.randn(2, 3, *size))
    compare(model, fused, torch.randn(1, 3, 40, 56).contiguous(memory_format=torch.channels_last))


def test_fuse_hire_mlps_finds_every_backbone():
    from mmhire.models import fuse_hire_mlps
    model = torch.nn.ModuleDict(dict(a=HireMLP(arch=TINY_ARCH), b=HireMLP(arch=TINY_ARCH),
                                     head=torch.nn.Conv2d(8, 8, 1)))
    assert fuse_hire_mlps(model) == 2
    assert model['a'].fused and model['b'].fused


def test_fused_backbone_refuses_to_train():
    fused = HireMLP(arch=TINY_ARCH).fuse()
    with pytest.raises(ValueError, match='fused for inference'):
        fused.train()
    fused.eval()  # still allowed


def test_fold_helpers_against_modules():
    conv = torch.nn.Conv2d(6, 4, 3, 2, 1)
    bn = randomize_norms(torch.nn.BatchNorm2d(4)).eval()
    x = torch.randn(2, 6, 9, 7)
    assert_rel_close(bn(conv(x)), fuse_conv_bn(conv, bn)(x), 1e-5)
    pre = randomize_norms(torch.nn.BatchNorm2d(3)).eval()
    conv1 = torch.nn.Conv2d(6, 5, 1)  # input channel c * 2 + i reads BN channel c
    x = torch.randn(2, 3, 4, 4)
    folded_in = pre(x).repeat_interleave(2, dim=1)
    assert_rel_close(conv1(folded_in), fuse_bn_conv(pre, conv1, repeat=2)(
        x.repeat_interleave(2, dim=1)), 1e-5)
    with pytest.raises(ValueError, match='1x1'):
        fuse_bn_conv(pre, torch.nn.Conv2d(3, 3, 3))
