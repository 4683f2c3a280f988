"""The Hire module: token mixing of Hire-MLP along height, width and channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .fuse import fuse_bn_conv, fuse_conv_bn, is_foldable_norm
from .channels_last import (FuseBranches, fold_height_nhwc, fold_width_nhwc,
                            height_branch_mean, in_channels_position_major,
                            out_channels_position_major, width_branch_mean)
from .region_rearrange import (PAD_MODES, crop_and_unshift, fold_regions, shift_and_pad,
                               shift_and_pad_slices, unfold_regions)


class ConvMlp(nn.Module):
    """Two 1x1 convolutions with a GELU between them (``fc1`` -> GELU -> ``fc2``)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, out_channels, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


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
        fast (bool): The channels-last path: 1x1 convolutions on NHWC memory (much faster in
            oneDNN), shifts and padding as slices instead of index gathers, no un-fold, crop or
            un-shift copies (the branches are added into the output through strided views).
            Same parameters, same results; ``False`` keeps the plain path (the test oracle).
    """

    def __init__(self, embed_dims: int, region_size: int, shift: int = 0,
                 pad_mode: str = 'circular', norm_cfg: dict = dict(type='BN'),
                 fast: bool = True):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f'pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        c, p = embed_dims, region_size
        self.embed_dims = embed_dims
        self.region_size = region_size
        self.shift = shift
        self.pad_mode = pad_mode
        self.fast = fast

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
        x = shift_and_pad(x, dim, self.region_size, self.shift, self.pad_mode)
        x = fold_regions(x, dim, self.region_size)
        x = fc2(self.act(norm(fc1(x))))
        x = unfold_regions(x, dim, self.region_size)
        return crop_and_unshift(x, dim, length, self.shift)

    def _region_mlp_nhwc(self, x, dim, fc1, norm, fc2):
        """The region MLP on channels-last memory; returns its output still folded,
        ``(B, p * C, Hp / p, W)`` or ``(B, p * C, H, Wp / p)``, position-major channels
        (see :mod:`~mmhire.models.layers.channels_last`)."""
        p = self.region_size
        frame = shift_and_pad_slices(x, dim, p, self.shift, self.pad_mode)
        frame = frame.contiguous(memory_format=torch.channels_last)
        folded = fold_height_nhwc(frame, p) if dim == 2 else fold_width_nhwc(frame, p)
        z = F.conv2d(folded, in_channels_position_major(fc1.weight, p), fc1.bias)
        weight, bias = out_channels_position_major(fc2.weight, fc2.bias, p)
        return F.conv2d(self.act(norm(z)), weight, bias)

    def _forward_fast(self, x):
        """Same result as the plain path, on channels-last memory.

        The branch outputs are never un-folded, cropped or un-shifted as copies: their means
        are taken over the data positions, and they are added, weighted, into the channel
        branch's output through strided views. ``proj`` then reads one channels-last map.
        """
        b, c, height, width = x.shape
        x = x.contiguous(memory_format=torch.channels_last)
        p, shift = self.region_size, self.shift
        yh = self._region_mlp_nhwc(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2)
        yw = self._region_mlp_nhwc(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2)
        ch = self.mlp_c(x).permute(0, 2, 3, 1)  # (B, H, W, C)

        mean = (height_branch_mean(yh, height, p) + width_branch_mean(yw, width, p)
                + ch.mean(dim=(1, 2)))
        a = self.reweight(mean.reshape(b, c, 1, 1)).reshape(b, c, 3).softmax(dim=2)
        a = a.permute(2, 0, 1).reshape(3, b, 1, 1, c)

        out = FuseBranches.apply(ch, yh, yw, a, p, shift)  # (B, H, W, C)
        return self.proj(out.permute(0, 3, 1, 2))

    def forward(self, x):
        if self.fast:
            return self._forward_fast(x)
        b, c = x.shape[:2]
        h = self._region_mlp(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2)
        w = self._region_mlp(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2)
        ch = self.mlp_c(x)

        # Branch weights: reweight's 3C outputs read as (C, 3), softmax over the 3 branches.
        a = (h + w + ch).mean(dim=(2, 3), keepdim=True)
        a = self.reweight(a).reshape(b, c, 3).softmax(dim=2)
        a = a.permute(2, 0, 1).unsqueeze(-1).unsqueeze(-1)  # (3, B, C, 1, 1)
        x = h * a[0] + w * a[1] + ch * a[2]
        return self.proj(x)

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
                f'shift={self.shift}, pad_mode={self.pad_mode!r}, fast={self.fast}')
