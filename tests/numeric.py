"""Shared numeric helpers of the suite (imported as ``from numeric import ...``, see conftest)."""
import torch

from mmhire.analysis.numeric import (draw_away_from_kinks,  # noqa: F401  (re-exported)
                                     randomize_norms)


def assert_rel_close(a, b, rel=1e-4, scale=None):
    """``max |a - b| < rel * scale``; ``scale`` defaults to ``max |a|`` (``a`` is the reference)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    scale = a.abs().max() if scale is None else scale
    err = ((a - b).abs().max() / max(float(scale), 1e-30)).item()
    assert err < rel, f'relative error {err:.3g} >= {rel:g}'
