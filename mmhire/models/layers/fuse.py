"""Folding inference-mode BatchNorm into the 1x1 / kxk convolutions next to it.

In eval mode a BatchNorm is a per-channel affine map ``y = s * x + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - s * running_mean``. Folded into the
convolution before it (``conv -> BN``) or after it (``BN -> conv``), it costs nothing at inference
and saves one pass over the feature map.
"""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def is_foldable_norm(norm) -> bool:
    """BatchNorm (BN, SyncBN) with running statistics: what can be folded."""
    return isinstance(norm, _BatchNorm) and norm.track_running_stats and \
        norm.running_mean is not None


def bn_scale_shift(bn: _BatchNorm, dtype: torch.dtype = torch.float64):
    """``(s, t)`` with ``bn(x) == s * x + t`` per channel, in eval mode, computed in
    ``dtype``."""
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * scale
    if bn.affine:
        shift = shift + bn.bias.to(dtype)
    return scale, shift


def _new_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused.requires_grad_(False)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` in eval mode."""
    scale, shift = bn_scale_shift(bn)
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    return _new_conv(conv, weight, bias)


@torch.no_grad()
def fuse_bn_conv(bn: _BatchNorm, conv: nn.Conv2d, repeat: int = 1) -> nn.Conv2d:
    """A 1x1 convolution equal to ``conv(bn(x))`` in eval mode.

    ``repeat`` > 1 is for a convolution over regions folded into channels (see
    :func:`~mmhire.models.layers.region_rearrange.fold_regions`): input channel ``c * p + i``
    is channel ``c`` of the normalised map, so each BN channel covers ``repeat`` inputs.
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError('fuse_bn_conv folds a norm into a 1x1 ungrouped convolution only '
                         '(a kxk convolution would also see its zero padding)')
    scale, shift = bn_scale_shift(bn)
    scale, shift = scale.repeat_interleave(repeat), shift.repeat_interleave(repeat)
    weight = conv.weight.double()
    bias = (weight[:, :, 0, 0] * shift).sum(1)
    if conv.bias is not None:
        bias = bias + conv.bias.double()
    return _new_conv(conv, weight * scale.reshape(1, -1, 1, 1), bias)
