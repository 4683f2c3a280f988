"""The Hire module: token mixing of Hire-MLP along height, width and channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .branch_folding import hire_fast
from .capture import counting_plain_path, is_graph_capture
from .fuse import fuse_bn_conv, fuse_conv_bn, is_foldable_norm
from .region_rearrange import (PAD_MODES, crop_and_unshift, fold_regions, shift_and_pad,
                               unfold_regions)


class ConvMlp(nn.Module):
    """Two 1x1 convolutions with a GELU between them (``fc1`` -> GELU -> ``fc2``)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, out_channels, 1)

    def forward(self, x):
        x = self.fc1(x)
        if (not is_graph_capture() and x.is_contiguous(memory_format=torch.channels_last)
                and not x.is_contiguous()):
            # the fast path's channels-last map, read as the contiguous NHWC tensor it is (a
            # view): PyTorch's CPU GELU and its backward are slower on channels-last strides
            # (docs/speed.md); recorded graphs keep the plain form (no transposes in ONNX)
            return self.fc2(self.act(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return self.fc2(self.act(x))

    def forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """On and to ``(B, H, W, C)``: the 1x1 convolutions as products over the last axis
        (what an export records, see :class:`~mmhire.models.layers.HireBlock`)."""
        hidden = self.act(F.linear(x, self.fc1.weight.flatten(1), self.fc1.bias))
        return F.linear(hidden, self.fc2.weight.flatten(1), self.fc2.bias)


class HireModule(nn.Module):
    """Hierarchical rearrangement MLP (the token mixer of a Hire-MLP block).

    Three branches see the same input: a height branch and a width branch that mix the tokens of
    each region of ``region_size`` positions (after a cross-region ``shift``), and a channel branch.
    A split-attention style ``reweight`` MLP fuses them per channel, and ``proj`` mixes the result.
    Parameter names match the released checkpoints (``mlp_h1``, ``mlp_h1_norm``, ...).

    Args:
        embed_dims (int): Channels C of the input. Must be even (the region MLPs are C/2 wide).
        region_size (int): Tokens per region along each axis.
        shift (int): Cross-region shift of this block, in tokens; 0 disables it.
        pad_mode (str): How an axis is padded to a multiple of ``region_size``:
            ``'circular'`` (released model), ``'constant'`` (zeros) or ``'replicate'``.
        norm_cfg (dict): Norm of the region MLPs. Defaults to ``dict(type='BN')``.
        fast (bool): The fast path (:func:`~mmhire.models.layers.branch_folding.hire_fast`):
            ``proj`` and the branch weights folded into per-image weights, batched matrix
            products on positions-major (channels-last) maps, the branch means read off the
            small hidden maps. What eager (every device), ``torch.compile`` and export
            (ONNX, ``torch.export``) run; same parameters and results. ``False`` keeps the
            plain path, the released formulation step by step (the test oracle).
        graph_fold (bool): Whether a recorded graph (ONNX, ``torch.export``,
            ``torch.compile``) folds ``proj`` and the branch weights into per-image weights.
            Folding pays on maps of more than ``C (p + 1)`` positions, which is the rule an
            eager run applies per call; a graph serves every size, so the choice is made
            here, per module. Same results either way.
    """

    def __init__(self, embed_dims: int, region_size: int, shift: int = 0,
                 pad_mode: str = 'circular', norm_cfg: dict = dict(type='BN'),
                 fast: bool = True, graph_fold: bool = True):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f'pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        c, p = embed_dims, region_size
        self.embed_dims = embed_dims
        self.region_size = region_size
        self.shift = shift
        self.pad_mode = pad_mode
        self.fast = fast
        self.graph_fold = graph_fold

        self.mlp_h1 = nn.Conv2d(c * p, c // 2, 1, bias=False)
        self.mlp_h1_norm = build_norm_layer(norm_cfg, c // 2)[1]
        self.mlp_h2 = nn.Conv2d(c // 2, c * p, 1)
        self.mlp_w1 = nn.Conv2d(c * p, c // 2, 1, bias=False)
        self.mlp_w1_norm = build_norm_layer(norm_cfg, c // 2)[1]
        self.mlp_w2 = nn.Conv2d(c // 2, c * p, 1)
        self.mlp_c = nn.Conv2d(c, c, 1)
        self.act = nn.ReLU()
        self.reweight = ConvMlp(c, c // 4, c * 3)
        self.proj = nn.Conv2d(c, c, 1)

    def _region_mlp(self, x, dim, fc1, norm, fc2):
        """Mix the tokens of each region along ``dim`` (2 = height, 3 = width)."""
        length = x.shape[dim]
        p, shift = self.region_size, self.shift
        x = fold_regions(shift_and_pad(x, dim, p, shift, self.pad_mode), dim, p)
        x = fc2(self.act(norm(fc1(x))))
        return crop_and_unshift(unfold_regions(x, dim, p), dim, length, shift)

    def forward(self, x):
        if self.fast and not counting_plain_path():
            return hire_fast(self, x)
        return self._forward_plain(x)

    def _forward_plain(self, x):
        """The released formulation, step by step: the test oracle."""
        h = self._region_mlp(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2)
        w = self._region_mlp(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2)
        ch = self.mlp_c(x)

        a = self.branch_weights((h + w + ch).mean(dim=(2, 3)))
        a = a.permute(2, 0, 1).unsqueeze(-1).unsqueeze(-1)  # (3, B, C, 1, 1)
        x = h * a[0] + w * a[1] + ch * a[2]
        return self.proj(x)

    def branch_weights(self, mean: torch.Tensor) -> torch.Tensor:
        """The branch weights ``(B, C, 3)`` from the mean ``(B, C)`` of the branch outputs'
        sum: ``reweight``'s 3C outputs read as (C, 3), softmax over the 3 branches."""
        b, c = mean.shape
        return self.reweight(mean.reshape(b, c, 1, 1)).reshape(b, c, 3).softmax(dim=2)

    @torch.no_grad()
    def fuse(self, pre_norm=None) -> bool:
        """Fold the region MLPs' norms (and ``pre_norm``, the norm applied to this module's
        input) into the 1x1 convolutions, for inference.

        ``pre_norm`` is folded only when the padding copies input values (``'circular'``,
        ``'replicate'``): per-channel affine maps commute with copying, but not with zero
        padding. Returns whether ``pre_norm`` was folded, so the caller can drop it.
        """
        for fc1, norm in (('mlp_h1', 'mlp_h1_norm'), ('mlp_w1', 'mlp_w1_norm')):
            if is_foldable_norm(getattr(self, norm)):
                setattr(self, fc1, fuse_conv_bn(getattr(self, fc1), getattr(self, norm)))
                setattr(self, norm, nn.Identity())
        if pre_norm is None or not is_foldable_norm(pre_norm) or self.pad_mode == 'constant':
            return False
        p = self.region_size
        self.mlp_h1 = fuse_bn_conv(pre_norm, self.mlp_h1, repeat=p)
        self.mlp_w1 = fuse_bn_conv(pre_norm, self.mlp_w1, repeat=p)
        self.mlp_c = fuse_bn_conv(pre_norm, self.mlp_c)
        return True

    def extra_repr(self):
        return (f'embed_dims={self.embed_dims}, region_size={self.region_size}, '
                f'shift={self.shift}, pad_mode={self.pad_mode!r}, fast={self.fast}, '
                f'graph_fold={self.graph_fold}')
