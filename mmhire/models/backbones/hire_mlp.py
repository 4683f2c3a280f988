"""Hire-MLP backbone (Guo et al., "Hire-MLP: Vision MLP via Hierarchical Rearrangement",
CVPR 2022)."""
import copy
import warnings
from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_init
from torch.nn.modules.batchnorm import _BatchNorm

from mmhire.checkpoint import load_pretrained
from mmhire.errors import HireMLPConfigError, HireMLPInputError, HireMLPTypeError
from mmhire.models.layers import PAD_MODES, ConvNormAct, HireBlock
from mmhire.models.layers.capture import is_graph_capture
from mmhire.registry import MODELS
from .arguments import check_drop_path_rate, check_frozen_stages, check_out_indices

_SHARED = dict(
    mlp_ratios=[4, 4, 4, 4],
    region_sizes=[4, 3, 3, 2],
    shift_periods=[2, 2, 3, 2],
    shift_steps=[2, 2, 1, 1],
)
ARCH_KEYS = ('depths', 'embed_dims', 'mlp_ratios', 'region_sizes', 'shift_periods', 'shift_steps')


def _channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


@MODELS.register_module()
class HireMLP(BaseModule):
    """Hire-MLP backbone for dense prediction.

    A convolutional stem (stride 4), then four stages of Hire blocks with a stride-2 convolution
    between them; it returns the feature maps of the stages in ``out_indices`` (strides 4, 8, 16,
    32). Module names match the authors' released ImageNet checkpoints (``patch_embed.*``,
    ``network.*``), which load as they are through
    ``init_cfg=dict(type='Pretrained', checkpoint='hire_mlp_small.pth')``.

    Any input size works. For an input side ``L`` the stage sides are::

        L1 = max(1, (L + 1) // 4)        # stem: conv 7x7, stride 4, padding 2
        L(k+1) = ceil(Lk / 2)            # conv 3x3, stride 2, padding 1, before stages 2-4

    e.g. 224 -> 56, 28, 14, 7 and 1333 -> 333, 167, 84, 42. Inside a stage the Hire modules pad
    each axis to a multiple of the region size (see ``pad_mode``) and crop back, so the size is
    kept.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` (or ``'t'``, ``'s'``,
            ``'b'``, ``'l'``, any case), or a dict with some of the keys ``depths``,
            ``embed_dims``, ``mlp_ratios``, ``region_sizes``, ``shift_periods``, ``shift_steps``
            (one entry per stage); missing keys take the released defaults (``'tiny'`` depths
            and widths). Block ``j`` of stage ``i`` shifts by
            ``(j % shift_periods[i]) * shift_steps[i]`` tokens.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int]): Stages (0-3) whose outputs are returned. Defaults to all.
        drop_path_rate (float): Stochastic depth rate, rising linearly over all blocks.
        norm_cfg (dict): Norm layers, e.g. ``dict(type='SyncBN')`` or ``dict(type='GN',
            num_groups=32)``. Defaults to ``dict(type='BN')`` as released.
        out_norm (bool): Add one norm per returned stage (``norm0`` ... ``norm3``), as in the
            authors' segmentation models. ``False`` returns the raw stage outputs.
        pad_mode (str): Padding of the Hire modules: ``'circular'`` (released), ``'constant'``
            (zeros) or ``'replicate'``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k (with
            the downsampling layers before them and their output norms); frozen norms stay in
            eval mode.
        norm_eval (bool): Keep every BatchNorm in eval mode during training (frozen statistics).
        with_cp (bool): Gradient checkpointing per block, saving memory for recomputation.
        fast (bool): Run on channels-last memory, where oneDNN's 1x1 convolutions are much
            faster, with the Hire modules' fast path (no gathers, no un-fold / crop / un-shift
            copies; see :class:`HireModule`). Same parameters and results (outputs are returned
            as contiguous NCHW either way); ``False`` selects the plain path, the test oracle.
        graph_fold (bool or sequence of 4 bools): Per stage, whether the graph that ONNX
            export, ``torch.export`` and ``torch.compile`` record folds ``proj`` and the branch
            weights into per-image weights (see :class:`HireModule`). Folding pays on maps of
            more than ``C (p + 1)`` positions: at 800x1216 stages 1-3 (200x304 to 50x76) gain,
            stage 4 (25x38, C 512) would lose, hence the default ``(True, True, True, False)``.
            For inputs around 224x224 ``(True, True, False, False)`` records less work. Same
            results either way; eager runs do not use it.
        pretrained (str, optional): Deprecated, use ``init_cfg=dict(type='Pretrained',
            checkpoint=...)``.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)`` loads a released
            or mmengine checkpoint (see :func:`mmhire.checkpoint.load_pretrained`; extra keys
            ``checkpoint_key``, e.g. ``'model_ema'``, and ``prefix``). Otherwise the released
            initialisation is used (truncated normal, std 0.02).

    Examples:
        >>> import torch
        >>> from mmhire import HireMLP
        >>> model = HireMLP(arch='tiny').eval()
        >>> with torch.no_grad():
        ...     outputs = model(torch.rand(1, 3, 230, 333))
        >>> for out in outputs:
        ...     print(tuple(out.shape))
        (1, 64, 57, 83)
        (1, 128, 29, 42)
        (1, 320, 15, 21)
        (1, 512, 8, 11)
        >>> HireMLP.stage_sizes(230, 333)
        [(57, 83), (29, 42), (15, 21), (8, 11)]
    """

    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(depths=[2, 2, 4, 2], embed_dims=[64, 128, 320, 512])),
        **dict.fromkeys(['s', 'small'], dict(depths=[3, 4, 10, 3], embed_dims=[64, 128, 320, 512])),
        **dict.fromkeys(['b', 'base'], dict(depths=[4, 6, 24, 3], embed_dims=[64, 128, 320, 512])),
        **dict.fromkeys(['l', 'large'], dict(depths=[4, 6, 24, 3], embed_dims=[96, 192, 384, 768])),
    }
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 out_norm: bool = True,
                 pad_mode: str = 'circular',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 fast: bool = True,
                 graph_fold: Union[bool, Sequence[bool]] = (True, True, True, False),
                 pretrained: str = None,
                 init_cfg=None,
                 **unknown_args):
        if unknown_args:
            raise HireMLPConfigError(_unknown_args_message(unknown_args))
        if pretrained is not None:
            if init_cfg is not None:
                raise HireMLPConfigError(
                    'Give either init_cfg or the deprecated pretrained=, not both')
            warnings.warn('HireMLP: pretrained= is deprecated, use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...)", DeprecationWarning)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)

        self.arch_settings = self._resolve_arch(arch)
        s = self.arch_settings
        self.depths = s['depths']
        self.embed_dims = s['embed_dims']
        self.in_channels = self._check_positive_int(in_channels, 'in_channels')
        self.out_indices = check_out_indices(out_indices, self.num_stages, 'HireMLP',
                                             HireMLPConfigError)
        if pad_mode not in PAD_MODES:
            raise HireMLPConfigError(
                f'HireMLP: pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        self.frozen_stages = check_frozen_stages(frozen_stages, self.num_stages, 'HireMLP',
                                                 HireMLPConfigError,
                                                 '-1 freezes nothing, 0 the stem')
        check_drop_path_rate(drop_path_rate, 'HireMLP', HireMLPConfigError)
        self.pad_mode = pad_mode
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.out_norm = out_norm
        self.fused = False
        self.fast = fast
        self.graph_fold = self._check_graph_fold(graph_fold)

        self.patch_embed = ConvNormAct(in_channels, self.embed_dims[0], 7, 4, 2, norm_cfg)

        total_blocks = sum(self.depths)
        dpr = [drop_path_rate * k / max(total_blocks - 1, 1) for k in range(total_blocks)]
        self.network = nn.ModuleList()
        first_block = 0
        for i in range(self.num_stages):
            if i > 0:
                self.network.append(
                    ConvNormAct(self.embed_dims[i - 1], self.embed_dims[i], 3, 2, 1, norm_cfg))
            blocks = [
                HireBlock(
                    self.embed_dims[i],
                    mlp_ratio=s['mlp_ratios'][i],
                    region_size=s['region_sizes'][i],
                    shift=(j % s['shift_periods'][i]) * s['shift_steps'][i],
                    drop_path=dpr[first_block + j],
                    pad_mode=pad_mode,
                    norm_cfg=norm_cfg,
                    fast=fast,
                    graph_fold=self.graph_fold[i]) for j in range(self.depths[i])
            ]
            self.network.append(nn.Sequential(*blocks))
            first_block += self.depths[i]

        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        self._freeze_stages()

    # ------------------------------------------------------------------ construction checks
    @staticmethod
    def stage_sizes(height: int, width: int) -> list:
        """The ``(height, width)`` of the four stage outputs for an input of that size (the
        rule in the class docstring)."""
        sizes = [(max(1, (height + 1) // 4), max(1, (width + 1) // 4))]
        for _ in range(3):
            h, w = sizes[-1]
            sizes.append((-(-h // 2), -(-w // 2)))
        return sizes

    @classmethod
    def _check_graph_fold(cls, graph_fold):
        if isinstance(graph_fold, bool):
            return (graph_fold,) * cls.num_stages
        if (isinstance(graph_fold, (list, tuple)) and len(graph_fold) == cls.num_stages
                and all(isinstance(v, bool) for v in graph_fold)):
            return tuple(graph_fold)
        raise HireMLPConfigError(
            f'HireMLP: graph_fold must be a bool or {cls.num_stages} bools, one per stage, '
            f'e.g. (True, True, True, False); got {graph_fold!r}')

    @classmethod
    def _resolve_arch(cls, arch):
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                names = sorted({k for k in cls.arch_zoo if len(k) > 1})
                raise HireMLPConfigError(f'HireMLP: unknown arch {arch!r}; choose one of {names} '
                                         f"(or their initials 't', 's', 'b', 'l'), or give a dict")
            settings = dict(_SHARED, **cls.arch_zoo[key])
        elif isinstance(arch, dict):
            unknown = set(arch) - set(ARCH_KEYS)
            if unknown:
                raise HireMLPConfigError(f'HireMLP: unknown arch keys {sorted(unknown)}; '
                                         f'valid keys are {list(ARCH_KEYS)}')
            settings = {**_SHARED, **cls.arch_zoo['tiny'], **arch}
        else:
            raise HireMLPTypeError(
                f'HireMLP: arch must be a str or a dict, got {type(arch).__name__}')
        settings = {k: list(v) if isinstance(v, (list, tuple)) else v
                    for k, v in copy.deepcopy(settings).items()}

        for key in ARCH_KEYS:
            value = settings[key]
            if not isinstance(value, list) or len(value) != cls.num_stages:
                raise HireMLPConfigError(
                    f'HireMLP: arch[{key!r}] must be a list of {cls.num_stages} '
                    f'values (one per stage), got {value!r}')
        for key in ('depths', 'embed_dims', 'region_sizes', 'shift_periods'):
            for v in settings[key]:
                cls._check_positive_int(v, f'every arch[{key!r}] entry')
        for v in settings['shift_steps']:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise HireMLPConfigError(f"HireMLP: arch['shift_steps'] entries must be ints >= 0, "
                                         f'got {settings["shift_steps"]!r}')
        for v in settings['mlp_ratios']:
            if not isinstance(v, (int, float)) or v <= 0:
                raise HireMLPConfigError(f"HireMLP: arch['mlp_ratios'] entries must be > 0, "
                                         f'got {settings["mlp_ratios"]!r}')
        for c in settings['embed_dims']:
            if c % 2 or c < 4:
                raise HireMLPConfigError(
                    f"HireMLP: arch['embed_dims'] entries must be even and >= 4 "
                    f'(the region MLPs are C/2 wide, the reweight MLP C/4), got '
                    f'{settings["embed_dims"]!r}')
        return settings

    @staticmethod
    def _check_positive_int(value, name):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HireMLPConfigError(f'HireMLP: {name} must be a positive int, got {value!r}')
        return value

    # ------------------------------------------------------------------ weights
    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            cfg = dict(self.init_cfg)
            if 'checkpoint' not in cfg:
                raise HireMLPConfigError(
                    "HireMLP: init_cfg of type 'Pretrained' needs checkpoint=PATH")
            load_pretrained(self, cfg['checkpoint'], checkpoint_key=cfg.get('checkpoint_key'),
                            prefix=cfg.get('prefix'))
            self._is_init = True
            return
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                trunc_normal_init(m, std=.02, bias=0.)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                constant_init(m, val=1., bias=0.)
        self._is_init = True

    # ------------------------------------------------------------------ train / freeze
    def _stage_modules(self, i):
        """The modules that make stage ``i`` (0-based): its downsampling layer, blocks, out norm."""
        mods = [self.network[2 * i]]
        if i > 0:
            mods.insert(0, self.network[2 * i - 1])
        if hasattr(self, f'norm{i}'):
            mods.append(getattr(self, f'norm{i}'))
        return mods

    def _freeze_stages(self):
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.patch_embed)
        for i in range(self.frozen_stages):
            frozen.extend(self._stage_modules(i))
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    @torch.no_grad()
    def fuse(self):
        """Fold the BatchNorms into the convolutions next to them, for inference; returns self.

        Every ``conv -> BN`` pair (stem, downsampling layers, the region MLPs' first layer) and
        every pre-norm in front of 1x1 convolutions (each block's ``norm2``, and its ``norm1``
        unless ``pad_mode='constant'``) becomes one convolution. Outputs are unchanged up to
        float rounding (the folding is done in float64). The fused model cannot be trained:
        :meth:`train` refuses. The output norms (``out_norm``) and non-BatchNorm norms stay.
        ``tools/test.py --fuse`` and ``tools/image_demo.py --fuse`` call it after loading the
        checkpoint.
        """
        if not self.fused:
            for m in [m for m in self.modules() if isinstance(m, (ConvNormAct, HireBlock))]:
                m.fuse()
            self.eval()  # (after: the modules fusing made are new, in training mode)
            self.fused = True
        return self

    def train(self, mode=True):
        if mode and getattr(self, 'fused', False):
            raise HireMLPConfigError(
                'this HireMLP was fused for inference (fuse() folded its BatchNorms into the '
                'convolutions), so it cannot train; train the unfused model and fuse a copy')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _check_input(self, x):
        if not isinstance(x, torch.Tensor):
            raise HireMLPTypeError(f'HireMLP expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4:
            raise HireMLPInputError(f'HireMLP expects a 4-D input (N, C, H, W), got shape '
                                    f'{tuple(x.shape)}; add a batch dimension with x[None]')
        if x.shape[1] != self.in_channels:
            raise HireMLPInputError(
                f'HireMLP expects {self.in_channels} input channels (in_channels='
                f'{self.in_channels}), got {x.shape[1]} in an input of shape {tuple(x.shape)}; '
                f'convert the images or set in_channels')
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise HireMLPInputError(f'HireMLP got an empty input of shape {tuple(x.shape)}: batch, '
                                    f'height and width must be at least 1')

    def _run_blocks(self, blocks, x):
        if not (self.with_cp and x.requires_grad and self.training):
            return blocks(x)
        for block in blocks:
            x = cp.checkpoint(block, x, use_reentrant=False)
        return x

    def forward(self, x):
        capturing = is_graph_capture()
        if not torch.jit.is_tracing():  # (the tracer's sizes are tensors: no Python checks)
            self._check_input(x)
        if self.fast:  # the whole backbone on channels-last memory (see HireModule's fast)
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        outs = []
        for i in range(self.num_stages):
            if i > 0:
                x = self.network[2 * i - 1](x)
            x = self._run_blocks(self.network[2 * i], x)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x) if self.out_norm else x
                if self.fast and out.requires_grad and not capturing:
                    # the necks and heads get plain NCHW (some call .view()); the gradient
                    # they hand back goes on into the network channels-last, the layout its
                    # backward is fast in (mixed layouts make elementwise backwards slow)
                    out.register_hook(_channels_last)
                outs.append(out.contiguous())
        return tuple(outs)


def _unknown_args_message(unknown_args):
    """'got an unexpected keyword argument', with the closest valid names as suggestions."""
    import difflib
    import inspect
    valid = [p for p in inspect.signature(HireMLP.__init__).parameters
             if p not in ('self', 'unknown_args')]
    parts = []
    for name in sorted(unknown_args):
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        parts.append(f'{name!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
    return (f'HireMLP got unknown argument(s) {", ".join(parts)} in model.backbone; '
            f'its arguments are {", ".join(valid)}')


def fuse_hire_mlps(model: nn.Module) -> int:
    """Call :meth:`HireMLP.fuse` on every HireMLP inside ``model`` (a whole detector or
    segmentor); returns how many were fused."""
    backbones = [m for m in model.modules() if isinstance(m, HireMLP)]
    for backbone in backbones:
        backbone.fuse()
    return len(backbones)
