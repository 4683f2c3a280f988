"""A forward and a backward on the ``meta`` device, in both formulations: no tensor of the
model's computation is made on a fixed device (a CPU index tensor, a ``torch.zeros`` without
``device=``), which would fail here and on a GPU alike."""
import pytest
import torch
from conftest import TINY_ARCH, stage_sides

from mmhire import HireMLP
from mmhire.models.layers import HireModule


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'plain'])
def test_backbone_forward_backward_on_meta(fast):
    model = HireMLP(arch=TINY_ARCH, fast=fast).to('meta').train()
    # 61x93: odd maps, padding at every stage; 200x304: the fast path's size
    for size in ((61, 93), (200, 304)):
        x = torch.randn(2, 3, *size, device='meta', requires_grad=True)
        outs = model(x)
        assert [o.device.type for o in outs] == ['meta'] * 4
        assert [tuple(o.shape[2:]) for o in outs] == list(zip(*map(stage_sides, size)))
        sum(o.sum() for o in outs).backward()
        assert x.grad.device.type == 'meta' and x.grad.shape == x.shape
        assert all(p.grad is not None and p.grad.device.type == 'meta'
                   for p in model.parameters())
        model.zero_grad(), setattr(x, 'grad', None)


@pytest.mark.parametrize('graph_fold', [True, False], ids=['folded', 'unfolded'])
@pytest.mark.parametrize('pad_mode', ['circular', 'constant', 'replicate'])
def test_recorded_fast_path_on_meta(pad_mode, graph_fold):
    """The fast path as a recorder sees it (indices built from the sizes, both ends)."""
    from unittest import mock

    import mmhire.models.layers.branch_folding as branch_folding
    module = HireModule(8, 3, 1, pad_mode, graph_fold=graph_fold).to('meta').train()
    x = torch.randn(2, 8, 7, 5, device='meta', requires_grad=True)
    with mock.patch.object(branch_folding, 'is_graph_capture', lambda: True):
        out = module(x)
    assert out.device.type == 'meta' and out.shape == x.shape
    out.sum().backward()
    assert x.grad.device.type == 'meta'
