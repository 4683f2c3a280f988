"""Shared numeric helpers of the suite (imported as ``from numeric import ...``, see conftest)."""
import torch

from mmhire.analysis.numeric import (draw_away_from_kinks,  # noqa: F401  (re-exported)
                                     randomize_norms)


def assert_rel_close(a, b, rel=1e-4, scale=None, what=''):
    """``max |a - b| < rel * scale``; ``scale`` defaults to ``max |a|`` (``a`` is the reference).
    ``what`` names the compared tensor in the failure message (e.g. a parameter's name)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    scale = a.abs().max() if scale is None else scale
    err = ((a - b).abs().max() / max(float(scale), 1e-30)).item()
    assert err < rel, f'{what + ": " if what else ""}relative error {err:.3g} >= {rel:g}'
