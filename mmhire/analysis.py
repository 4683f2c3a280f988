"""Parameter and FLOP counts of HireMLP variants (mmengine's complexity analysis)."""
import torch

from mmhire.models import HireMLP

# What the released classifier adds on top of the backbone: BN on the last stage + Linear head.
def classifier_params(last_dims: int, num_classes: int = 1000) -> int:
    return 2 * last_dims + (last_dims + 1) * num_classes


def backbone_complexity(arch='tiny', shape=(224, 224), out_norm=False, **kwargs) -> dict:
    """Params and MACs (multiply-adds, what mmengine and fvcore call FLOPs) of one backbone.

    Returns a dict with ``params`` (backbone), ``params_with_head`` (plus the released
    classifier's norm and head, comparable with the released table) and ``macs``.
    """
    from mmengine.analysis import FlopAnalyzer
    model = HireMLP(arch=arch, out_norm=out_norm, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        macs = FlopAnalyzer(model, (torch.randn(1, model.in_channels, *shape),))
        macs.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = macs.total()
    return dict(arch=arch, shape=tuple(shape), params=params,
                params_with_head=params + classifier_params(model.embed_dims[-1]), macs=total)
