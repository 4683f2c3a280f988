"""MLP-Mixer backbone (Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision",
NeurIPS 2021).

Written here from the paper as a peer for the backbone comparison (``tools/compare.py``): the
usual implementation is ``mmpretrain.MlpMixer``, and mmpretrain cannot be imported on this CPU
stack (its torchvision does not load with this torch). Argument and parameter names follow
mmpretrain 1.2.0's ``MlpMixer``, so its configs port by changing the type to ``'MlpMixer'``
and its checkpoints load unchanged.
"""
from typing import Sequence, Union

import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple

from mmhire.errors import MlpMixerConfigError, MlpMixerInputError
from mmhire.registry import MODELS
from .arguments import check_out_indices

ARCH_KEYS = ('embed_dims', 'num_layers', 'tokens_mlp_dims', 'channels_mlp_dims')


class MixerMlp(nn.Module):
    """Linear, activation, dropout, Linear, dropout.

    The layers sit in ``layers`` as ``[[fc1, act, drop], fc2, drop]``, the layout of mmcv's
    ``FFN`` that mmpretrain uses, so checkpoint keys read ``layers.0.0.*`` and ``layers.1.*``.

    Args:
        dims (int): Input and output features.
        hidden_dims (int): Hidden features.
        act_cfg (dict): Activation.
        drop_rate (float): Dropout after the activation and after the last layer.
    """

    def __init__(self, dims, hidden_dims, act_cfg=dict(type='GELU'), drop_rate=0.):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dims, hidden_dims), build_activation_layer(act_cfg),
                          nn.Dropout(drop_rate)),
            nn.Linear(hidden_dims, dims), nn.Dropout(drop_rate))

    def forward(self, x):
        return self.layers(x)


class MixerBlock(nn.Module):
    """Norm, token-mixing MLP (across the N tokens), residual; norm, channel-mixing MLP,
    residual. Tokens are ``(B, N, C)``.

    Args:
        num_tokens (int): N, the number of patches; the token MLP is sized to it.
        embed_dims (int): C.
        tokens_mlp_dims (int): Hidden width of the token-mixing MLP.
        channels_mlp_dims (int): Hidden width of the channel-mixing MLP.
        drop_rate (float): Dropout inside both MLPs.
        drop_path_rate (float): Stochastic depth on both residual branches.
        act_cfg (dict): Activation of both MLPs.
        norm_cfg (dict): Both norms.
    """

    def __init__(self, num_tokens, embed_dims, tokens_mlp_dims, channels_mlp_dims,
                 drop_rate=0., drop_path_rate=0., act_cfg=dict(type='GELU'),
                 norm_cfg=dict(type='LN')):
        super().__init__()
        # build_norm_layer names them ('ln1', 'ln2' for LN) as the checkpoints do
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, embed_dims, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.token_mix = MixerMlp(num_tokens, tokens_mlp_dims, act_cfg, drop_rate)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, embed_dims, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.channel_mix = MixerMlp(embed_dims, channels_mlp_dims, act_cfg, drop_rate)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x):
        y = getattr(self, self.norm1_name)(x).transpose(1, 2)
        x = x + self.drop_path(self.token_mix(y).transpose(1, 2))
        return x + self.drop_path(self.channel_mix(getattr(self, self.norm2_name)(x)))


@MODELS.register_module()
class MlpMixer(BaseModule):
    """MLP-Mixer backbone.

    A ``patch_size`` conv with the same stride cuts the image into N patch tokens, then
    ``num_layers`` :class:`MixerBlock`; the final norm (``ln1``) follows the last layer. Each
    layer in ``out_indices`` returns its tokens as ``(B, C, N)``.

    It is built for one input size: the token-mixing MLPs are ``N x tokens_mlp_dims`` with
    ``N = (H / p) * (W / p)`` for ``img_size`` (sides not divisible by ``p`` are padded at the
    bottom right, as mmcv's ``PatchEmbed`` does), and any other input size is refused.

    Args:
        arch (str | dict): ``'b'`` / ``'base'`` or ``'l'`` / ``'large'``, or a dict with the
            keys ``embed_dims``, ``num_layers``, ``tokens_mlp_dims``, ``channels_mlp_dims``.
            Defaults to ``'b'``.
        img_size (int | tuple[int, int]): The input size ``(H, W)`` it is built for.
            Defaults to 224.
        patch_size (int): Patch side. Defaults to 16.
        out_indices (int | Sequence[int]): Layers whose outputs are returned (negative counts
            from the end), in layer order. Defaults to -1, the last layer.
        drop_rate (float): Dropout inside the MLPs. Defaults to 0.
        drop_path_rate (float): Stochastic depth rate, the same in every layer (as in
            mmpretrain). Defaults to 0.
        norm_cfg (dict): Norm layers. Defaults to ``dict(type='LN')``.
        act_cfg (dict): Activation of the MLPs. Defaults to ``dict(type='GELU')``.
        patch_cfg (dict): Overrides of mmcv's ``PatchEmbed`` arguments. Defaults to ``{}``.
        layer_cfgs (dict | Sequence[dict]): Overrides of :class:`MixerBlock` arguments, for all
            layers or one dict per layer. Defaults to ``{}``.
        init_cfg (dict | list[dict], optional): mmengine initialisation, e.g.
            ``dict(type='Pretrained', checkpoint=PATH)``. Defaults to None: Xavier-uniform MLP
            weights with biases of std 1e-6, as mmpretrain initialises them.
    """

    arch_zoo = {
        **dict.fromkeys(['b', 'base'], dict(embed_dims=768, num_layers=12, tokens_mlp_dims=384,
                                            channels_mlp_dims=3072)),
        **dict.fromkeys(['l', 'large'], dict(embed_dims=1024, num_layers=24,
                                             tokens_mlp_dims=512, channels_mlp_dims=4096)),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: Union[int, tuple] = 224,
                 patch_size: int = 16,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 act_cfg: dict = dict(type='GELU'),
                 patch_cfg: dict = dict(),
                 layer_cfgs: Union[dict, Sequence[dict]] = dict(),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._resolve_arch(arch)
        self.embed_dims, self.num_layers, self.tokens_mlp_dims, self.channels_mlp_dims = (
            self.arch_settings[k] for k in ARCH_KEYS)
        self.img_size = tuple(to_2tuple(img_size))
        if not all(isinstance(s, int) and s > 0 for s in self.img_size):
            raise MlpMixerConfigError(
                f'MlpMixer: img_size must be an int or (H, W) of positive ints, got {img_size!r}')
        self.out_indices = check_out_indices(out_indices, self.num_layers, 'MlpMixer',
                                             MlpMixerConfigError, unit='layer')

        self.patch_embed = PatchEmbed(**dict(
            dict(input_size=self.img_size, embed_dims=self.embed_dims, conv_type='Conv2d',
                 kernel_size=patch_size, stride=patch_size), **patch_cfg))
        self.patch_resolution = self.patch_embed.init_out_size
        self.num_patches = self.patch_resolution[0] * self.patch_resolution[1]

        if isinstance(layer_cfgs, dict):
            layer_cfgs = [layer_cfgs] * self.num_layers
        if len(layer_cfgs) != self.num_layers:
            raise MlpMixerConfigError(f'MlpMixer: layer_cfgs must be a dict or {self.num_layers} '
                                      f'dicts (one per layer), got {len(layer_cfgs)}')
        self.layers = nn.ModuleList([MixerBlock(**dict(
            dict(num_tokens=self.num_patches, embed_dims=self.embed_dims,
                 tokens_mlp_dims=self.tokens_mlp_dims, channels_mlp_dims=self.channels_mlp_dims,
                 drop_rate=drop_rate, drop_path_rate=drop_path_rate, act_cfg=act_cfg,
                 norm_cfg=norm_cfg), **cfg)) for cfg in layer_cfgs])
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, self.embed_dims, postfix=1)
        self.add_module(self.norm1_name, norm1)

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise MlpMixerConfigError(f'MlpMixer: unknown arch {arch!r}; choose one of '
                                          f'{list(cls.arch_zoo)} or give a dict with the keys '
                                          f'{list(ARCH_KEYS)}')
            return dict(cls.arch_zoo[arch.lower()])
        if not isinstance(arch, dict):
            raise MlpMixerConfigError(
                f'MlpMixer: arch must be a str or a dict, got {type(arch).__name__}')
        if set(arch) != set(ARCH_KEYS):
            raise MlpMixerConfigError(f'MlpMixer: an arch dict needs exactly the keys '
                                      f'{list(ARCH_KEYS)}, got {sorted(arch)}')
        if not all(isinstance(arch[k], int) and arch[k] > 0 for k in ARCH_KEYS):
            raise MlpMixerConfigError(f'MlpMixer: arch values must be positive ints, got {arch}')
        return dict(arch)

    def init_weights(self):
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.layers.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        self._is_init = True

    def forward(self, x):
        if x.dim() != 4:
            raise MlpMixerInputError(
                f'MlpMixer expects (B, C, H, W) images, got shape {tuple(x.shape)}')
        if tuple(x.shape[2:]) != self.img_size:
            h, w = x.shape[2:]
            ph, pw = self.patch_embed.projection.kernel_size
            raise MlpMixerInputError(
                f"MlpMixer doesn't support dynamic input shape: got an input of {h}x{w}, but "
                f'it was built for img_size={self.img_size}.\n'
                f"MLP-Mixer's token-mixing MLPs are sized to the token count "
                f'({self.num_patches} patches of {ph}x{pw}), so it '
                f'does not support other input sizes; rebuild with img_size=({h}, {w}).')
        x, _ = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == self.num_layers - 1:
                x = getattr(self, self.norm1_name)(x)
            if i in self.out_indices:
                outs.append(x.transpose(1, 2))
        return tuple(outs)
