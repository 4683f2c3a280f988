"""Autocast: bf16 on CPU (default fast path) stays finite and close to float32; fp16 on CUDA
only where a GPU is present."""
import pytest
import torch
from conftest import TINY_ARCH
from numeric import assert_rel_close, randomize_norms

from mmhire import HireMLP


def make_model():
    model = HireMLP(arch=TINY_ARCH)
    model.init_weights()
    return randomize_norms(model)


@pytest.mark.parametrize('training', [True, False], ids=['train', 'eval'])
def test_cpu_bf16_autocast_close_to_float32(training):
    model = make_model().train(training)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 61, 93)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = model(xa)
    sum(o.sum() for o in ref).backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.load_state_dict(start)  # the first pass moved the BN statistics in training
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(xb)
        assert any(o.dtype == torch.bfloat16 for o in outs)  # autocast really ran in bf16
        sum(o.float().sum() for o in outs).backward()
    for a, b in zip(ref, outs):
        assert torch.isfinite(b).all()
        assert_rel_close(a.detach(), b.detach().float(), 5e-2)
    # gradients: finite everywhere (bf16 keeps ~3 digits, so they are not compared closely)
    assert torch.isfinite(xb.grad).all()
    for p, g in zip(model.parameters(), ref_grads):
        assert torch.isfinite(p.grad).all() and (p.grad != 0).any() == (g != 0).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_fp16_autocast_close_to_float32():
    model = make_model().cuda().train()
    x = torch.randn(2, 3, 61, 93, device='cuda')
    ref = model(x)
    with torch.autocast('cuda', dtype=torch.float16):
        outs = model(x)
        sum(o.float().sum() for o in outs).backward()
    for a, b in zip(ref, outs):
        assert torch.isfinite(b).all()
        assert_rel_close(a.detach(), b.detach().float(), 2e-2)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
