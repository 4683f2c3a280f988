"""Mixed precision on CPUs: the backbone and neck in bf16, the rest float32 (mmhire.engine.amp)."""
import pytest
import torch
import torch.nn as nn
from conftest import TINY_ARCH
from numeric import assert_rel_close

from mmhire import HireMLP
from mmhire.engine import (AutocastOptimWrapper, FeatureAutocastHook, feature_autocast,
                           inference_autocast)
from mmhire.errors import AmpError


class TinyDetector(nn.Module):
    """backbone -> neck -> head, the attribute names mmdet / mmseg models use."""

    def __init__(self):
        super().__init__()
        self.backbone = HireMLP(arch=TINY_ARCH)
        self.neck = nn.Conv2d(TINY_ARCH['embed_dims'][-1], 8, 1)
        self.head = nn.Conv2d(8, 4, 1)
        self.seen = {}
        for name in ('neck', 'head'):  # the dtype each module computes in
            getattr(self, name).register_forward_hook(
                lambda m, i, o, name=name: self.seen.__setitem__(name, o.dtype))
        self.backbone.patch_embed.proj.register_forward_hook(
            lambda m, i, o: self.seen.__setitem__('backbone', o.dtype))

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)[-1]))


def test_backbone_and_neck_run_bf16_the_head_float32():
    model = TinyDetector().eval()
    x = torch.randn(2, 3, 61, 45)
    with torch.no_grad():
        reference = model(x)
        with feature_autocast(model):
            out = model(x)
    assert model.seen == dict(backbone=torch.bfloat16, neck=torch.bfloat16, head=torch.float32)
    assert out.dtype == torch.float32
    assert_rel_close(out, reference, 3e-2)
    # the hooks are gone afterwards
    model(x)
    assert model.seen == dict(backbone=torch.float32, neck=torch.float32, head=torch.float32)


def test_training_step_under_feature_autocast_has_finite_float32_gradients():
    model = TinyDetector().train()
    with feature_autocast(model):
        outs = model.backbone(torch.randn(2, 3, 40, 56))
        assert all(o.dtype == torch.float32 for o in outs)
        loss = model.head(model.neck(outs[-1])).square().mean() + sum(o.mean() for o in outs)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.grad is not None, name
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name


def test_a_model_without_backbone_or_neck_is_refused():
    with pytest.raises(AmpError, match='no backbone or neck'):
        with feature_autocast(nn.Linear(2, 2)):
            pass


def test_the_hooks_leave_autocast_even_when_the_backbone_raises():
    model = TinyDetector()
    with feature_autocast(model):
        with pytest.raises(ValueError):
            model(torch.randn(2, 4, 32, 32))  # wrong channel count: HireMLP's own error
        assert not torch.is_autocast_enabled('cpu')


def wrapper_for(model, **kwargs):
    from mmengine.registry import OPTIM_WRAPPERS
    return OPTIM_WRAPPERS.build(dict(type='AutocastOptimWrapper',
                                     optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                     **kwargs))


def test_optim_wrapper_trains_on_cpu_without_a_loss_scaler(monkeypatch):
    monkeypatch.setattr('mmhire.engine.amp.cpu_supports_bf16', lambda: True)
    model = TinyDetector().train()
    wrapper = wrapper_for(model, clip_grad=dict(max_norm=1.0))
    assert isinstance(wrapper, AutocastOptimWrapper) and wrapper.loss_scaler is None
    before = model.head.weight.detach().clone()
    with wrapper.optim_context(model):
        loss = model(torch.randn(2, 3, 32, 48)).square().mean()
    assert model.seen['backbone'] == torch.bfloat16
    wrapper.update_params(loss)
    assert not torch.equal(before, model.head.weight)
    state = wrapper.state_dict()
    assert 'loss_scaler' not in state
    wrapper.load_state_dict(dict(state, loss_scaler={'scale': 65536.0}))  # from a GPU run


def test_optim_wrapper_falls_back_to_float32_without_native_bf16(monkeypatch):
    monkeypatch.setattr('mmhire.engine.amp.cpu_supports_bf16', lambda: False)
    model = TinyDetector().train()
    wrapper = wrapper_for(model)
    assert wrapper.cast_dtype is None
    with wrapper.optim_context(model):
        model(torch.randn(2, 3, 32, 32))
    assert model.seen['backbone'] == torch.float32


def test_optim_wrapper_refuses_fp16_on_cpu():
    with pytest.raises(AmpError, match="runs in bfloat16 only: leave dtype out"):
        wrapper_for(TinyDetector(), dtype='float16')


def test_feature_autocast_hook_covers_val_and_test_epochs(monkeypatch):
    monkeypatch.setattr('mmhire.engine.amp.cpu_supports_bf16', lambda: True)

    class Runner:
        model = TinyDetector().eval()

    hook, runner = FeatureAutocastHook(), Runner()
    x = torch.randn(1, 3, 32, 32)
    for before, after in ((hook.before_val_epoch, hook.after_val_epoch),
                          (hook.before_test_epoch, hook.after_test_epoch)):
        before(runner)
        runner.model(x)
        assert runner.model.seen['backbone'] == torch.bfloat16
        after(runner, metrics=None)
        runner.model(x)
        assert runner.model.seen['backbone'] == torch.float32
    with inference_autocast(runner.model):
        runner.model(x)
    assert runner.model.seen['neck'] == torch.bfloat16
