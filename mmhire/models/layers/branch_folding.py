"""The Hire module's fast path: the plain path's numbers, batched, in standard operators.

The Hire module ends in ``proj(a_h * h + a_w * w + a_c * ch)``: ``proj`` is a 1x1 convolution
(linear), the branch weights ``a`` are per image and channel, and each branch ends in a linear
map too (``mlp_h2``, ``mlp_w2``, ``mlp_c``). So the module's output is the sum of three products
whose weights absorb ``proj . diag(a_k)`` (:func:`_combine_folded`), run on maps that exist
anyway: the region MLPs' hidden maps and the input. ``a`` is a function of the branches' means,
which :func:`branch_mean` reads off the hidden maps without the full-size branch outputs.
Folding saves ``proj`` (``C^2`` multiply-adds per position) and the weighted sum's passes, and
costs about ``C^3 (p + 1)`` per image: on maps of fewer than ``C (p + 1)`` positions the branch
outputs, their mean, the weighted sum and ``proj`` run as in the plain path instead
(:func:`_combine`), which also takes fewer launches there.

Layout: every map is *positions-major*, ``(B, A, L, C)`` with the channels last (a view of the
backbone's channels-last maps, no copy), and every product is a matrix product over the last
dimension (in an eager run, the region MLPs' first maps, shared by all images, are 1x1
convolutions of the same memory read as channels-last: one backward launch instead of two or
three). The width branch works on ``(B, H, W, C)``, the height branch on its transpose
``(B, W, H, C)``, so that both fold an axis of *consecutive* positions: after the shift-and-pad
gather (:mod:`~mmhire.models.layers.region_rearrange`) the ``p`` tokens of a region sit side by
side, and ``(B, A, Lp, C)`` read as ``(B, A, R, p * C)`` is the folded map, a view. The region
MLPs' released weights are *channel-major* (input or output ``c * p + i`` is token ``i`` of
channel ``c``); the (small) weights are reordered to the maps' *position-major* order
(``i * C + c``), not the (large) maps. A folded product's output ``(B, A, R, p * C)`` read as
``(B, A, Lp, C)`` is un-folded, again a view, and one gather crops the padding and undoes the
shift (for the width branch of an eager run, a scatter that adds as well). In an export, where
a transpose is a full-map copy, the height branch is not transposed: its products apply each
token's slice of the weights to the rows of the map (:func:`region_hidden`,
:func:`_height_rows`), and the block around the module stays ``(B, H, W, C)``
(:class:`~mmhire.models.layers.HireBlock`).

Every image has its own folded weights, so the products are batched matrix products
(``baddbmm``: the bias rides along): no loop over images, the same kernels for every batch size.
Sizes are used as the caller sees them (ints in an eager run, ``SymInt`` under dynamo, 0-d
tensors under ``torch.jit.trace``), so one recorded graph serves every input size. Means, not
sums: a sum over a map of tens of thousands of positions overflows float16.

Index letters: ``b`` image, ``a`` the axis across the branch, ``r`` region, ``i`` token in a
region (``p`` = ``region_size``), ``c`` a branch channel (``C``), ``o`` an output channel of
``proj`` (``C``), ``k`` a hidden channel of a region MLP (``K = C / 2``).
"""
import torch
import torch.nn.functional as F

from .capture import is_exporting, is_graph_capture
from .region_rearrange import (cached_indices, crop_index, data_mask, region_token_shares,
                               region_token_weights, shift_pad_index)


def _is_eager_int(*sizes) -> bool:
    """Sizes an eager run may make Python decisions on (a recorder's sizes are symbolic)."""
    return not is_graph_capture() and all(isinstance(s, int) for s in sizes)


def region_hidden(module, x_nhwc: torch.Tensor, dim: int, fc1, norm) -> torch.Tensor:
    """The hidden map of a region MLP along ``dim`` of ``x_nhwc`` ``(B, H, W, C)`` (1: height,
    2: width): shift and pad (one gather, skipped in an eager run with nothing to move), fold,
    ``fc1``, norm and activation. Returns ``(B, A, R, K)``, ``A`` the other spatial axis.

    The width folds as a view. The height folds on the transposed map ``(B, W, H, C)`` (a view
    that the gather or the fold copies), except in an export, where a transpose is a full-map
    ``Transpose`` node: there ``fc1`` is token ``i``'s ``(C, K)`` map applied to ``(B, R, p, W,
    C)`` and summed over ``i``, and only the (smaller) hidden map is transposed."""
    rows = dim == 1 and is_exporting()
    if dim == 1 and not rows:
        x_nhwc, dim = x_nhwc.transpose(1, 2), 2
    # channel counts from the module, not the map: ints, so that the weights' reshapes stay
    # constants in a recorded graph (folded away by an exporter, not run per call)
    b, c = x_nhwc.shape[0], module.embed_dims
    length = x_nhwc.shape[dim]
    p, shift = module.region_size, module.shift
    if not (_is_eager_int(length) and shift % length == 0 and length % p == 0):
        index = cached_indices(shift_pad_index, length, p, shift, module.pad_mode,
                               device=x_nhwc.device)
        x_nhwc = x_nhwc.index_select(dim, index)
        if module.pad_mode == 'constant':
            mask = cached_indices(data_mask, length, p, device=x_nhwc.device)
            x_nhwc = torch.where(mask.reshape([-1] + [1] * (3 - dim)), x_nhwc, 0.)
    k = fc1.out_channels
    weight = fc1.weight.reshape(k, c, p)
    if rows:  # (B, R, p, W, C) @ (p, C, K), summed over the tokens: (B, R, W, K)
        width = x_nhwc.shape[2]
        hidden = (x_nhwc.reshape(b, -1, p, width, c) @ weight.permute(2, 1, 0)).sum(dim=2)
        if fc1.bias is not None:
            hidden = hidden + fc1.bias
        hidden = hidden.permute(0, 3, 2, 1)  # (B, K, W, R)
    else:
        weight = weight.transpose(1, 2).reshape(k, p * c)  # position-major
        folded = x_nhwc.reshape(b, x_nhwc.shape[1], -1, p * c)
        if is_graph_capture():  # a product over the last axis: no transpose of the map in ONNX
            hidden = F.linear(folded, weight, fc1.bias).permute(0, 3, 1, 2)
        else:  # a 1x1 convolution of the same memory read as channels-last (B, p C, A, R):
            # one launch in the backward where a matrix product takes two or three, no
            # slower on a CPU
            hidden = F.conv2d(folded.permute(0, 3, 1, 2), weight[:, :, None, None], fc1.bias)
    # the norm sees (B, K, A, R): channels-last memory, the same positions as the plain path's
    return module.act(norm(hidden)).permute(0, 2, 3, 1)


def branch_mean(module, x_nhwc: torch.Tensor, hidden_h: torch.Tensor,
                hidden_w: torch.Tensor) -> torch.Tensor:
    """Mean over the map of the three branch outputs' sum, ``(B, C)`` (what ``reweight``
    reads), from the input's mean and the region MLPs' hidden maps ``(B, A, R, K)``, without
    computing any branch output.

    A region branch's output at token ``i`` of a region is ``W_i @ hidden + b_i`` (``fc2``'s
    weight and bias for token ``i``), so its mean over the data positions (not the padding) is
    ``sum_i W_i @ s_i + b_i n_i / L``: ``s_i`` sums the per-region means of ``hidden`` over the
    ``n_i`` regions whose token ``i`` holds data, divided by the axis' length ``L``. Every
    factor is a mean or a share, so float16 stays in range. The terms accumulate in one chain
    of ``addmm`` (one launch each, no separate sums).
    """
    b, height, width = x_nhwc.shape[:3]
    c, p = module.embed_dims, module.region_size
    branches = ((module.mlp_h2, hidden_h, height), (module.mlp_w2, hidden_w, width))
    mean = module.mlp_c.bias
    # the biases' part first, sum_i b_i n_i / L, while the chain is still (1, C): addmm's
    # input may broadcast up to its product's shape, not down from (B, C) to (1, C)
    for fc2, hidden, length in branches:
        shares = cached_indices(region_token_shares, length, p, dtype=hidden.dtype,
                                device=hidden.device)
        mean = torch.addmm(mean, shares.reshape(1, p), fc2.bias.reshape(c, p).t())
    if is_exporting():  # onnxruntime's ReduceMean over two leading axes is slow (13.8 ms
        # against 2.7 for this product at 200x304x64); 1 / H first, so float16 sums stay small
        share = torch.ones_like(x_nhwc[:, :, :, 0]).reshape(b, 1, -1) / height
        x_mean = (share @ x_nhwc.reshape(b, -1, c)).reshape(b, c) / width
    else:
        x_mean = x_nhwc.mean(dim=(1, 2))
    mean = torch.addmm(mean, x_mean, module.mlp_c.weight.reshape(c, c).t())
    for fc2, hidden, length in branches:
        k = fc2.in_channels
        weights = cached_indices(region_token_weights, length, p, dtype=hidden.dtype,
                                 device=hidden.device)  # (p, R): 1 / L where token i holds data
        token_means = weights @ hidden.mean(dim=1)  # (B, p, K): s_i
        mean = torch.addmm(mean, token_means.reshape(b, p * k), fc2.weight.reshape(c, p * k).t())
    return mean


def _crop(out: torch.Tensor, length, shift: int, dim: int = 2) -> torch.Tensor:
    """The data positions of axis ``dim`` of ``out``, un-shifted (a view in an eager run
    without shift, one gather otherwise)."""
    if _is_eager_int(length) and shift % length == 0:
        return out.narrow(dim, 0, length)
    return out.index_select(dim, cached_indices(crop_index, length, shift, device=out.device))


def _add_cropped(out: torch.Tensor, region: torch.Tensor, length, shift: int) -> torch.Tensor:
    """``out + _crop(region, length, shift)``, both ``(B, A, L, C)``. An eager run with a
    shift scatters with ``index_add`` instead: one launch for the gather and the add, and a
    gather as its backward instead of a zero fill and a scatter. A recorded graph keeps the
    gather (ONNX has no exact scatter-add for it)."""
    if not _is_eager_int(length) or shift % length == 0:
        return out + _crop(region, length, shift)
    if region.shape[2] > length:
        region = region.narrow(2, 0, length)  # the padding is at the end of the shifted axis
    # position j of the shifted axis belongs at (j - shift) mod length: crop_index's inverse
    return out.index_add(2, cached_indices(crop_index, length, -shift, device=out.device),
                         region)


def _position_major(fc2: torch.nn.Conv2d, channels: int):
    """``fc2``'s weight ``(C * p, K)`` and bias, channel-major, as ``(p, C, K)`` and ``(p, C)``:
    token ``i``'s rows together."""
    p = fc2.out_channels // channels
    weight = fc2.weight.reshape(channels, p, -1).transpose(0, 1)
    return weight, fc2.bias.reshape(channels, p).t()


def _height_rows(module, hidden_h, weight, bias, height, width) -> torch.Tensor:
    """The height branch's output in an export, ``(B, H, W, O)``, without a transpose of the
    map: the hidden map ``(B, W, R, K)`` transposed (it is smaller), and for token ``i`` of
    each region ``hidden @ weight[..., i, :, :] + bias[..., i, :, :]`` (``weight`` ``(..., p,
    K, O)``, ``bias`` ``(..., p, 1, O)``), which lands positions-major."""
    b, c = hidden_h.shape[0], module.embed_dims
    out = hidden_h.transpose(1, 2).unsqueeze(2) @ weight + bias  # (B, R, p, W, O)
    return _crop(out.reshape(b, -1, width, c), height, module.shift, dim=1)


def _combine_folded(module, x_nhwc, a, hidden_h, hidden_w):
    """The module's output ``(B, H, W, C)``, with ``proj . diag(a_k)`` folded into each
    branch's last linear map, per image."""
    b, height, width = x_nhwc.shape[:3]
    c, p, k = module.embed_dims, module.region_size, module.mlp_w2.in_channels
    # proj . diag(a_k) for the height, width and channel branches, each (B, O, C)
    scaled_h, scaled_w, scaled_c = (module.proj.weight.reshape(c, c)
                                    * a.transpose(1, 2).unsqueeze(2)).unbind(1)

    def folded(scaled_k, fc2):
        """The branch's folded weight ``(B, K, p O)`` and bias ``(B, 1, p O)``, [b, k, (i, o)]."""
        # (K + 1, p, C), [k, i, c]: fc2's weight position-major, its bias as hidden channel K
        weight = torch.cat([fc2.weight.reshape(c, p, k).permute(2, 1, 0),
                            fc2.bias.reshape(1, c, p).transpose(1, 2)])
        return (weight.reshape((k + 1) * p, c) @ scaled_k.transpose(1, 2)).reshape(
            b, k + 1, p * c).split([k, 1], dim=1)

    channel = scaled_c @ module.mlp_c.weight.reshape(c, c)  # (B, O, C)
    channel_bias = torch.baddbmm(module.proj.bias.expand(b, 1, c),  # (B, 1, O)
                                 module.mlp_c.bias.expand(b, 1, c), scaled_c.transpose(1, 2))
    out = torch.baddbmm(channel_bias, x_nhwc.reshape(b, height * width, c),
                        channel.transpose(1, 2)).reshape(b, height, width, c)
    weight, bias = folded(scaled_w, module.mlp_w2)
    out = _add_cropped(out, torch.baddbmm(bias, hidden_w.reshape(b, -1, k), weight).reshape(
        b, height, -1, c), width, module.shift)
    weight, bias = folded(scaled_h, module.mlp_h2)
    if is_exporting():
        return out + _height_rows(module, hidden_h, weight.reshape(b, 1, k, p, c).transpose(2, 3),
                                  bias.reshape(b, 1, p, 1, c), height, width)
    # (not _add_cropped: its scatter would return the sum in the height branch's transposed
    # layout, or hand the branch a gradient it must copy to un-transpose)
    h = torch.baddbmm(bias, hidden_h.reshape(b, -1, k), weight).reshape(b, width, -1, c)
    return out + _crop(h, height, module.shift).transpose(1, 2)


def _combine(module, x_nhwc, hidden_h, hidden_w):
    """The module's output ``(B, H, W, C)`` without folding, as in the plain path: the branch
    outputs, their weights from their sum's mean, the weighted sum and ``proj``. On the small
    maps where this runs, a mean of the full-size outputs takes fewer launches than
    :func:`branch_mean`."""
    b, height, width = x_nhwc.shape[:3]
    c = module.embed_dims

    def region_branch(fc2, hidden, length):
        weight, bias = _position_major(fc2, c)
        out = F.linear(hidden, weight.reshape(-1, weight.shape[2]), bias.reshape(-1))
        return _crop(out.reshape(b, hidden.shape[1], -1, c), length, module.shift)

    if is_exporting():
        weight, bias = _position_major(module.mlp_h2, c)
        h = _height_rows(module, hidden_h, weight.transpose(1, 2), bias.unsqueeze(1), height,
                         width)
    else:
        h = region_branch(module.mlp_h2, hidden_h, height).transpose(1, 2)
    w = region_branch(module.mlp_w2, hidden_w, width)
    ch = F.linear(x_nhwc, module.mlp_c.weight.reshape(c, c), module.mlp_c.bias)
    a_h, a_w, a_c = (a.reshape(b, 1, 1, c) for a in
                     module.branch_weights((h + w + ch).mean(dim=(1, 2))).unbind(2))
    mixed = torch.addcmul(torch.addcmul(ch * a_c, h, a_h), w, a_w)
    return F.linear(mixed, module.proj.weight.reshape(c, c), module.proj.bias)


def folds_weights(module, height, width) -> bool:
    """Whether :func:`hire_fast` folds ``proj`` and the branch weights into per-image weights:
    in an eager run when the map has more than ``C (p + 1)`` positions (folding's cost and
    saving break even there), while a graph is recorded as ``module.graph_fold`` says (one
    graph serves every size)."""
    if _is_eager_int(height, width):
        return height * width > module.embed_dims * (module.region_size + 1)
    return module.graph_fold


def hire_fast(module, x: torch.Tensor) -> torch.Tensor:
    """:class:`~mmhire.models.layers.HireModule` ``module`` on ``x`` ``(B, C, H, W)``: the
    plain path's numbers (see the module docstring). On a channels-last ``x`` the result is
    channels-last and no map is copied to change its layout."""
    return hire_fast_nhwc(module, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def hire_fast_nhwc(module, x_nhwc: torch.Tensor) -> torch.Tensor:
    """:func:`hire_fast` on and to ``(B, H, W, C)``."""
    height, width = x_nhwc.shape[1:3]
    hidden_h = region_hidden(module, x_nhwc, 1, module.mlp_h1, module.mlp_h1_norm)
    hidden_w = region_hidden(module, x_nhwc, 2, module.mlp_w1, module.mlp_w1_norm)
    if folds_weights(module, height, width):
        a = module.branch_weights(branch_mean(module, x_nhwc, hidden_h, hidden_w))
        return _combine_folded(module, x_nhwc, a, hidden_h, hidden_w)
    return _combine(module, x_nhwc, hidden_h, hidden_w)
