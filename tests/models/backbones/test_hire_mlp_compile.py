"""torch.compile(HireMLP, fullgraph=True): one graph, the eager model's outputs and gradients,
in eval and for a training step (static shapes: with dynamic=True, compiling takes minutes on
2 cores, see docs/deploy.md)."""
import copy

import pytest
import torch
from conftest import TINY_ARCH
from numeric import assert_rel_close, randomize_norms

from mmhire import HireMLP


def make_model():
    model = HireMLP(arch=TINY_ARCH)
    model.init_weights()
    return randomize_norms(model)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_eval_equals_eager():
    model = make_model().eval()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for size in [(2, 3, 61, 93)]:
            x = torch.randn(*size)
            for a, b in zip(model(x), compiled(x)):
                assert a.shape == b.shape
                assert_rel_close(a, b, 1e-4)


@pytest.mark.slow
def test_compiled_training_step_equals_eager():
    eager = make_model().train()
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True)
    for size in [(2, 3, 64, 96)]:
        x = torch.randn(*size)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        outs_a, outs_b = eager(xa), compiled(xb)
        for a, b in zip(outs_a, outs_b):
            assert_rel_close(a, b, 1e-4)
        weights = [torch.randn_like(o) for o in outs_a]
        sum((o * w).sum() for o, w in zip(outs_a, weights)).backward()
        sum((o * w).sum() for o, w in zip(outs_b, weights)).backward()
        assert_rel_close(xa.grad, xb.grad, 1e-3)
        scale = max(p.grad.abs().max() for p in eager.parameters())
        for (name, pa), pb in zip(eager.named_parameters(), model.parameters()):
            assert_rel_close(pa.grad, pb.grad, 1e-3, scale), name
        for (name, ba), bb in zip(eager.named_buffers(), model.buffers()):
            assert_rel_close(ba.float(), bb.float(), 1e-4), name  # BN statistics moved alike
        eager.zero_grad(), model.zero_grad()
