"""ConvNeXt backbone (Liu et al., "A ConvNet for the 2020s", CVPR 2022).

Written here from the paper as a peer for the backbone comparison (``tools/compare.py``):
mmdet's and mmseg's ConvNeXt configs use ``mmpretrain.ConvNeXt``, and mmpretrain cannot be
imported on this CPU stack (its torchvision does not load with this torch). Argument and
parameter names follow mmpretrain 1.2.0's ``ConvNeXt``, so a config that uses
``type='mmpretrain.ConvNeXt'`` ports by changing the type to ``'ConvNeXt'``, and mmpretrain's
ImageNet checkpoints load unchanged (``init_cfg=dict(type='Pretrained', checkpoint=...,
prefix='backbone.')``).
"""
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_init

from mmhire.errors import ConvNeXtConfigError
from mmhire.registry import MODELS
from .arguments import check_drop_path_rate, check_frozen_stages, check_out_indices


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, H, W)`` maps."""

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        # contiguous NCHW: necks and heads may call .view() on the outputs
        return x.permute(0, 3, 1, 2).contiguous()


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, MLP (C -> 4C -> C), layer scale, drop path, residual.

    Args:
        channels (int): Input and output channels.
        drop_path_rate (float): Stochastic depth rate of this block.
        layer_scale_init_value (float, optional): Initial layer scale; 0 or None: none.
        act_cfg (dict): Activation of the MLP.
    """

    def __init__(self, channels, drop_path_rate=0., layer_scale_init_value=1e-6,
                 act_cfg=dict(type='GELU')):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        # Linear layers on channels-last maps (the official layout), not 1x1 convs: the
        # checkpoints hold (out, in) weights without the trailing 1x1.
        self.pointwise_conv1 = nn.Linear(channels, 4 * channels)
        self.act = build_activation_layer(act_cfg)
        self.pointwise_conv2 = nn.Linear(4 * channels, channels)
        self.gamma = (nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
                      if layer_scale_init_value and layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x):
        y = self.depthwise_conv(x).permute(0, 2, 3, 1)
        y = self.pointwise_conv2(self.act(self.pointwise_conv1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt backbone.

    A stem (``stem_patch_size`` conv with the same stride, then LayerNorm), then stages of
    :class:`ConvNeXtBlock` with a LayerNorm and a 2x2 stride-2 conv between them (strides 4, 8,
    16, 32 by default). Convolutions do not pad, so each side is floored: 61 -> 15, 7, 3, 1.
    Each stage in ``out_indices`` gets its own output LayerNorm (``norm0`` ... ``norm3``).

    Args:
        arch (str | dict): ``'tiny'``, ``'small'`` or ``'base'``, or a dict with ``depths``
            (blocks per stage) and ``channels`` (width per stage), lists of equal length.
            Defaults to ``'tiny'``.
        in_channels (int): Input channels. Defaults to 3.
        stem_patch_size (int): Kernel and stride of the stem conv. Defaults to 4.
        act_cfg (dict): Activation in the blocks' MLPs. Defaults to ``dict(type='GELU')``.
        drop_path_rate (float): Stochastic depth rate of the last block; it rises linearly
            from 0 over all blocks. Defaults to 0.
        layer_scale_init_value (float, optional): Initial value of the per-channel layer
            scale; 0 or None disables it. Defaults to 1e-6 (mmdet's detectors use 1.0).
        out_indices (int | Sequence[int]): Stages whose outputs are returned (negative counts
            from the end); outputs come in stage order. Defaults to -1, the last stage.
        frozen_stages (int): Stages 0..k-1 (with the stem or downsampling layer before each)
            are frozen: eval mode, ``requires_grad=False``. Defaults to 0 (none).
        gap_before_final_norm (bool): Average-pool each output before its norm, giving
            ``(B, C)`` vectors (classification). False gives the normed ``(B, C, H, W)`` maps
            (detection, segmentation). Defaults to True.
        init_cfg (dict | list[dict], optional): mmengine initialisation, e.g.
            ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``. Defaults to None:
            the paper's initialisation (truncated normal, std 0.02, zero biases).
    """

    arch_zoo = {
        'tiny': dict(depths=[3, 3, 9, 3], channels=[96, 192, 384, 768]),
        'small': dict(depths=[3, 3, 27, 3], channels=[96, 192, 384, 768]),
        'base': dict(depths=[3, 3, 27, 3], channels=[128, 256, 512, 1024]),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 stem_patch_size: int = 4,
                 act_cfg: dict = dict(type='GELU'),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = 0,
                 gap_before_final_norm: bool = True,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.depths, self.channels = self._resolve_arch(arch)
        self.num_stages = len(self.depths)
        self.out_indices = check_out_indices(out_indices, self.num_stages, 'ConvNeXt',
                                             ConvNeXtConfigError)
        self.frozen_stages = check_frozen_stages(frozen_stages, self.num_stages, 'ConvNeXt',
                                                 ConvNeXtConfigError,
                                                 '0 and -1 both freeze nothing')
        check_drop_path_rate(drop_path_rate, 'ConvNeXt', ConvNeXtConfigError)
        self.gap_before_final_norm = gap_before_final_norm

        # downsample_layers[0] is the stem: one list, as in the checkpoints
        c = self.channels
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(in_channels, c[0], stem_patch_size, stride=stem_patch_size),
            LayerNorm2d(c[0], eps=1e-6))])
        for i in range(1, self.num_stages):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(c[i - 1], eps=1e-6), nn.Conv2d(c[i - 1], c[i], 2, stride=2)))

        # torch.linspace, not a Python formula: the same rates to the last bit as mmpretrain;
        # on the CPU, also when built under another default device (meta, cuda)
        rates = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            self.stages.append(nn.Sequential(*[
                ConvNeXtBlock(c[i], rates[first + j], layer_scale_init_value, act_cfg)
                for j in range(depth)]))
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(c[i], eps=1e-6))
        self._freeze_stages()

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ConvNeXtConfigError(f'ConvNeXt: unknown arch {arch!r}; choose one of '
                                          f'{list(cls.arch_zoo)} or give a dict with '
                                          f"'depths' and 'channels'")
            arch = cls.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise ConvNeXtConfigError(
                f'ConvNeXt: arch must be a str or a dict, got {type(arch).__name__}')
        if set(arch) != {'depths', 'channels'}:
            raise ConvNeXtConfigError(f"ConvNeXt: an arch dict needs exactly the keys 'depths' "
                                      f"and 'channels', got {sorted(arch)}")
        depths, channels = list(arch['depths']), list(arch['channels'])
        if (len(depths) != len(channels) or not depths
                or not all(isinstance(v, int) and v > 0 for v in depths + channels)):
            raise ConvNeXtConfigError(
                f"ConvNeXt: arch 'depths' ({depths}) and 'channels' ({channels}) must be "
                f'lists of positive ints of the same length, one entry per stage')
        return depths, channels

    def init_weights(self):
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                trunc_normal_init(m, std=.02, bias=0.)
            elif isinstance(m, nn.LayerNorm):
                constant_init(m, val=1., bias=0.)
        self._is_init = True

    def _freeze_stages(self):
        for i in range(self.frozen_stages):
            for m in (self.downsample_layers[i], self.stages[i]):
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x):
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean((2, 3), keepdim=True)).flatten(1))
                else:
                    outs.append(norm(x))
        return tuple(outs)
