"""The fast path's arithmetic: branch means and branch weights folded into ``proj``.

The Hire module ends in ``proj(a_h * h + a_w * w + a_c * ch)``: ``proj`` is a 1x1 convolution
(linear), the branch weights ``a`` are per channel, and each branch ends in a 1x1 convolution
too (``mlp_h2``, ``mlp_w2``, ``mlp_c``). So the module's output is the sum of three convolutions
whose weights absorb ``proj . diag(a_k)`` (:func:`fold_into_proj`), run on maps that exist
anyway (the region MLPs' hidden maps and the input). ``a`` is a function of the branches'
means, which :func:`region_branch_mean` reads off the hidden maps without computing the
full-size branch outputs.

Index letters, here and in the einsums below:

- ``o``: an output channel of ``proj`` (= of the module), ``C`` of them;
- ``c``: a channel of a branch output (= an input channel of ``proj``), ``C``;
- ``i``: a token's position inside its region, ``p`` = ``region_size``;
- ``k``: a hidden channel of a region MLP, ``C / 2``;
- ``b``: an image of the batch.

A region MLP's second convolution, ``mlp_h2`` or ``mlp_w2``, has ``C * p`` outputs in the
released *channel-major* order (output ``c * p + i`` is token ``i`` of channel ``c``); it is
handled here as a weight ``(C, p, K)`` ``[c, i, k]`` and a bias ``(C, p)`` ``[c, i]``.
"""
from typing import NamedTuple

import torch


def region_branch_mean(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       length: int, dim: int) -> torch.Tensor:
    """Mean over the data positions (not the padding) of a region branch's output, ``(B, C)``,
    from its hidden map, without computing the output.

    The output at token ``i`` of a region is ``weight[:, i] @ hidden + bias[:, i]``. Every
    region holds data at all ``p`` tokens except possibly the last one along ``dim``, which
    holds ``rem``; so the sum over data positions needs only the hidden map's total and its
    last region's sum.

    Args:
        hidden (Tensor): ``(B, K, Hp / p, W)`` (``dim=2``) or ``(B, K, H, Wp / p)`` (``dim=3``).
        weight (Tensor): ``(C, p, K)``, the second convolution's weight.
        bias (Tensor): ``(C, p)``, its bias.
        length (int): Data length of the axis ``dim`` (before padding).
        dim (int): 2 (height branch) or 3 (width branch).
    """
    p = weight.shape[1]
    regions = hidden.shape[dim]
    across = hidden.shape[5 - dim]  # the other spatial axis, which has no padding
    rem = length - (regions - 1) * p  # data tokens in the last region
    # per-region sums first: their backward is a broadcast, where narrowing the map itself
    # would zero-fill a full-size gradient
    region_sums = hidden.sum(dim=5 - dim)  # (B, K, regions)
    total = region_sums.sum(dim=2)  # (B, K)
    last = region_sums[:, :, -1]
    # per token i: the sum of the hidden map over the regions whose token i holds data
    token_sums = total.unsqueeze(1) - last.unsqueeze(1) * (
        torch.arange(p, device=hidden.device) >= rem).to(hidden.dtype).reshape(1, p, 1)
    counts = torch.full((p,), regions, dtype=hidden.dtype, device=hidden.device)
    counts[rem:] -= 1
    out = torch.einsum('cik,bik->bc', weight, token_sums) + (bias * counts).sum(1) * across
    return out / (length * across)


class FoldedWeights(NamedTuple):
    """One image's convolution weights with ``proj . diag(a_k)`` folded in.

    ``height`` / ``width``: ``(p * C, K, 1, 1)`` with *position-major* outputs (output
    ``i * C + o`` is token ``i`` of channel ``o``), the order in which the channels-last
    un-fold reads them; ``height_bias`` / ``width_bias``: ``(p * C,)``; ``channel``:
    ``(C, C, 1, 1)``; ``channel_bias``: ``(C,)``, which also carries ``proj``'s bias.
    """
    height: torch.Tensor
    height_bias: torch.Tensor
    width: torch.Tensor
    width_bias: torch.Tensor
    channel: torch.Tensor
    channel_bias: torch.Tensor


def fold_into_proj(proj: torch.nn.Conv2d, branch_weights: torch.Tensor,
                   mlp_h2: torch.nn.Conv2d, mlp_w2: torch.nn.Conv2d,
                   mlp_c: torch.nn.Conv2d) -> FoldedWeights:
    """``proj . diag(a_k) . last_conv_k`` for the three branches of one image.

    Args:
        proj: The module's output projection, ``C -> C``.
        branch_weights (Tensor): ``(C, 3)``, the image's softmax weights ``a`` of the height,
            width and channel branches.
        mlp_h2, mlp_w2: The region MLPs' second convolutions, ``K -> C * p`` channel-major.
        mlp_c: The channel branch, ``C -> C``.
    """
    c = proj.out_channels
    p = mlp_h2.out_channels // c
    # proj . diag(a_k) for k = height, width, channel: (3, C, C), [k, o, c]
    scaled_proj = proj.weight.reshape(c, c) * branch_weights.t().unsqueeze(1)
    folded = []
    for k, conv in enumerate((mlp_h2, mlp_w2)):
        weight = torch.einsum('oc,cik->iok', scaled_proj[k], conv.weight.reshape(c, p, -1))
        bias = torch.einsum('oc,ci->io', scaled_proj[k], conv.bias.reshape(c, p))
        folded += [weight.reshape(p * c, -1, 1, 1), bias.reshape(p * c)]
    channel = scaled_proj[2] @ mlp_c.weight.reshape(c, c)
    channel_bias = scaled_proj[2] @ mlp_c.bias + proj.bias
    return FoldedWeights(*folded, channel.reshape(c, c, 1, 1), channel_bias)
