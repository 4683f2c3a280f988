"""A forward and a backward on the ``meta`` device, in every formulation: no tensor of the
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


@pytest.mark.parametrize('pad_mode', ['circular', 'constant', 'replicate'])
def test_graph_path_on_meta(pad_mode):
    """The traceable formulation (ONNX, ``torch.export``, ``torch.compile``) on its own."""
    module = HireModule(8, 3, 1, pad_mode).to('meta').train()
    x = torch.randn(2, 8, 7, 5, device='meta', requires_grad=True)
    out = module.forward_traceable(x)
    assert out.device.type == 'meta' and out.shape == x.shape
    out.sum().backward()
    assert x.grad.device.type == 'meta'


@pytest.mark.parametrize('batched', [False, True], ids=['per_image', 'batched'])
@pytest.mark.parametrize('pad_mode', ['circular', 'constant', 'replicate'])
def test_compiled_formulation_on_meta(pad_mode, batched):
    """What ``torch.compile`` runs (:func:`~mmhire.models.layers.compiled.hire_compiled`)."""
    from mmhire.models.layers.compiled import hire_compiled
    module = HireModule(8, 3, 1, pad_mode).to('meta').train()
    x = torch.randn(2, 8, 7, 5, device='meta', requires_grad=True)
    out = hire_compiled(module, x, batched=batched)
    assert out.device.type == 'meta' and out.shape == x.shape
    out.sum().backward()
    assert x.grad.device.type == 'meta'
