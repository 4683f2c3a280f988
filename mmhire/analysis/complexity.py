"""Parameter and MAC counts of HireMLP variants and whole configs (mmengine's FlopAnalyzer)."""
import torch

from mmhire.models import HireMLP

# The authors' released ImageNet-1K figures at 224x224 (Guo et al., CVPR 2022): parameters with
# the 1000-class head, MACs and top-1 accuracy (%).
RELEASED = {
    'tiny': dict(params=18.04e6, macs=2.1e9, top1=79.7),
    'small': dict(params=33.11e6, macs=4.2e9, top1=82.1),
    'base': dict(params=58.23e6, macs=8.1e9, top1=83.2),
    'large': dict(params=95.72e6, macs=13.4e9, top1=83.8),
}


def count_macs(model: torch.nn.Module, inputs: tuple) -> int:
    """Multiply-adds of one no-grad forward of ``model`` on ``inputs`` (mmengine's
    ``FlopAnalyzer``, which records the model with ``torch.jit.trace``; unsupported-op and
    uncalled-module warnings off). Hire modules are counted in the released (plain)
    formulation, the architecture's multiply-adds, not in the graph that export records."""
    from mmengine.analysis import FlopAnalyzer

    from mmhire.models.layers.capture import count_plain_path
    with torch.no_grad(), count_plain_path():
        analyzer = FlopAnalyzer(model, inputs)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analyzer.total()


# What the released classifier adds on top of the backbone: BN on the last stage + Linear head.
def classifier_params(last_dims: int, num_classes: int = 1000) -> int:
    return 2 * last_dims + (last_dims + 1) * num_classes


def backbone_complexity(arch='tiny', shape=(224, 224), out_norm=False, **kwargs) -> dict:
    """Params and MACs (multiply-adds, what mmengine and fvcore call FLOPs) of one backbone.

    Returns a dict with ``params`` (backbone), ``params_with_head`` (plus the released
    classifier's norm and head, comparable with the released table) and ``macs``.
    """
    model = HireMLP(arch=arch, out_norm=out_norm, **kwargs).eval()
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (torch.randn(1, model.in_channels, *shape),))
    return dict(arch=arch, shape=tuple(shape), params=params,
                params_with_head=params + classifier_params(model.embed_dims[-1]), macs=macs)


def model_complexity(cfg, shape=(800, 1333)) -> dict:
    """Params and MACs of a whole detector / segmentor config at one input shape (H, W)."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    from mmhire.apis import toolbox_of
    toolbox = toolbox_of(cfg)
    cfg.model.setdefault('backbone', {})['init_cfg'] = None
    if toolbox == 'mmseg':
        cfg.model.pretrained = None
    h, w = shape
    with DefaultScope.overwrite_default_scope(toolbox):
        if toolbox == 'mmdet':
            from mmdet.registry import MODELS
            from mmdet.structures import DetDataSample as Sample
        else:
            from mmseg.registry import MODELS
            from mmseg.structures import SegDataSample as Sample
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    batch_input_shape=(h, w), scale_factor=(1., 1.))
        samples = [Sample(metainfo=meta)]

        class Tensorize(torch.nn.Module):
            """Feeds the model's plain forward pass (no loss, no post-processing)."""

            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner._forward(x, samples)

        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(Tensorize(model), (torch.randn(1, 3, h, w),))
    return dict(params=params, macs=macs, shape=(h, w))
