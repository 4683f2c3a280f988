"""Shared numeric helpers of the suite (imported as ``from numeric import ...``, see conftest)."""
import torch
from torch.nn.modules.batchnorm import _BatchNorm


def assert_rel_close(a, b, rel=1e-4, scale=None):
    """``max |a - b| < rel * scale``; ``scale`` defaults to ``max |a|`` (``a`` is the reference)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    scale = a.abs().max() if scale is None else scale
    err = ((a - b).abs().max() / max(float(scale), 1e-30)).item()
    assert err < rel, f'relative error {err:.3g} >= {rel:g}'


def randomize_norms(model):
    """Non-trivial BN statistics and affine parameters, so folding them is really tested."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.3, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model
