"""The backbones a detection or segmentation user would pick instead of HireMLP, by name, for
the side-by-side comparison (:mod:`mmhire.analysis.compare`, ``tools/compare.py``).

Each peer is a backbone config dict, built through the registry of the toolbox that ships it
(mmdet for ResNet, Swin and PVTv2; mmhire for HireMLP, and for ConvNeXt and MLP-Mixer, written
from their papers with mmpretrain's argument and parameter names: mmpretrain cannot be imported on
the CPU stack, see docs/install.md), with the channels of its four outputs (what an FPN neck
needs). A
``small`` variant of every peer (same family, a few blocks, narrow) lets the tests and
``--small`` runs exercise the whole tool in seconds.

MLP-Mixer is the model the Hire-MLP paper argues against: it has no feature pyramid (one
stride-16 token map) and its token-mixing MLPs are sized to the token count, so it is built
for one input size (``img_size``) and refuses every other.
"""
from typing import NamedTuple, Optional, Tuple

from mmhire.errors import CompareError


class Peer(NamedTuple):
    label: str
    cfg: dict  # the backbone, as a config dict of its toolbox's registry
    small: dict  # overrides for the small variant
    channels: Tuple[int, ...]  # of the four outputs (default variant)
    small_channels: Tuple[int, ...]
    toolbox: str  # 'mmhire' or 'mmdet'
    pyramid: bool = True  # four outputs at strides 4-32
    fixed_size: bool = False  # built for one input size (img_size)
    pretrain_size: int = 224


PEERS = {
    'hire_t': Peer('HireMLP-T', dict(type='HireMLP', arch='tiny'),
                   dict(arch=dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 48, 64])),
                   (64, 128, 320, 512), (16, 32, 48, 64), 'mmhire'),
    'hire_s': Peer('HireMLP-S', dict(type='HireMLP', arch='small'),
                   dict(arch=dict(depths=[1, 2, 2, 1], embed_dims=[16, 32, 48, 64])),
                   (64, 128, 320, 512), (16, 32, 48, 64), 'mmhire'),
    'resnet18': Peer('ResNet-18', dict(type='ResNet', depth=18, out_indices=(0, 1, 2, 3)),
                     dict(base_channels=8), (64, 128, 256, 512), (8, 16, 32, 64), 'mmdet'),
    'resnet50': Peer('ResNet-50', dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3)),
                     dict(depth=18, base_channels=8), (256, 512, 1024, 2048), (8, 16, 32, 64),
                     'mmdet'),
    'swin_t': Peer('Swin-T', dict(type='SwinTransformer', embed_dims=96, depths=(2, 2, 6, 2),
                                  num_heads=(3, 6, 12, 24), window_size=7,
                                  out_indices=(0, 1, 2, 3)),
                   dict(embed_dims=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)),
                   (96, 192, 384, 768), (16, 32, 64, 128), 'mmdet'),
    'pvtv2_b0': Peer('PVTv2-b0', dict(type='PyramidVisionTransformerV2', embed_dims=32,
                                      num_layers=[2, 2, 2, 2]),
                     dict(embed_dims=8, num_layers=[1, 1, 1, 1]), (32, 64, 160, 256),
                     (8, 16, 40, 64), 'mmdet'),
    'pvtv2_b2': Peer('PVTv2-b2', dict(type='PyramidVisionTransformerV2', embed_dims=64,
                                      num_layers=[3, 4, 6, 3]),
                     dict(embed_dims=8, num_layers=[1, 1, 1, 1]), (64, 128, 320, 512),
                     (8, 16, 40, 64), 'mmdet'),
    'convnext_t': Peer('ConvNeXt-T', dict(type='ConvNeXt', arch='tiny',
                                          out_indices=[0, 1, 2, 3], gap_before_final_norm=False),
                       dict(arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128])),
                       (96, 192, 384, 768), (16, 32, 64, 128), 'mmhire'),
    'mlp_mixer': Peer('MLP-Mixer-B/16', dict(type='MlpMixer', arch='b',
                                             patch_size=16, out_indices=(-1,)),
                      dict(arch=dict(embed_dims=32, num_layers=2, tokens_mlp_dims=16,
                                     channels_mlp_dims=64)),
                      (768,), (32,), 'mmhire', pyramid=False, fixed_size=True),
}

NO_PYRAMID = ('no feature pyramid: MLP-Mixer returns one stride-16 token map (B, C, N), '
              'while the neck takes four 2-D maps at strides 4-32')


def check_known(names, known, kind='backbone'):
    """``names`` as a list, or :class:`CompareError` naming the unknown ones and the known."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CompareError(f"unknown {kind}(s) {', '.join(map(repr, unknown))}; known: "
                           f"{', '.join(known)}")
    return list(names)


def check_names(names):
    """Backbone ``names`` as a list (:func:`check_known` against :data:`PEERS`)."""
    return check_known(names, PEERS)


def backbone_cfg(name: str, small: bool = False, img_size: Optional[Tuple[int, int]] = None,
                 scope: str = 'mmdet'):
    """The config dict of peer ``name`` (its small variant with ``small``) for a model built
    in ``scope``'s registry; a fixed-size peer is built for ``img_size`` (H, W; default its
    pretraining size). mmdet's backbones get an ``mmdet.`` prefix outside mmdet: mmseg has
    classes of the same names (its own ResNet and Swin), and the comparison wants one
    implementation of each backbone in every host."""
    peer = PEERS[check_names([name])[0]]
    cfg = dict(peer.cfg, **(peer.small if small else {}))
    if peer.toolbox == 'mmdet' and scope != 'mmdet':
        cfg['type'] = 'mmdet.' + cfg['type']
    if peer.fixed_size:
        cfg['img_size'] = tuple(img_size or (peer.pretrain_size, peer.pretrain_size))
    return cfg


def out_channels(name: str, small: bool = False) -> Tuple[int, ...]:
    peer = PEERS[name]
    return peer.small_channels if small else peer.channels


def import_toolbox(toolbox: str):
    """Import what registers a toolbox's backbones."""
    if toolbox == 'mmdet':
        import mmdet.models  # noqa: F401
    import mmhire  # noqa: F401  (registers HireMLP in mmdet's and mmseg's registries)


def build_backbone(name: str, small: bool = False, img_size=None):
    """The backbone of peer ``name``, randomly initialised (nothing is downloaded)."""
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    import_toolbox(PEERS[check_names([name])[0]].toolbox)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return revert_sync_batchnorm(MODELS.build(backbone_cfg(name, small, img_size)))
