"""The Hire module as one graph of standard operators, for graph capture.

``torch.jit.trace`` (and the TorchScript ONNX exporter that mmdeploy drives), ``torch.export``
(the dynamo ONNX exporter) and ``torch.compile(dynamic=True)`` record one graph that must hold
for every input size. (A ``torch.compile`` with static sizes, the default, runs
:mod:`~mmhire.models.layers.compiled` instead, which may guard on sizes.) The eager paths
cannot be recorded that way: they pick slices, shortcuts and custom autograd functions by
comparing sizes in Python (a comparison made while recording is frozen into the graph at the
example's size), and the fast path adds into its output in place.

The *graph path* (:func:`hire_graph`) does the eager fast path's arithmetic
(:mod:`~mmhire.models.layers.branch_folding`) with operators every backend runs fast:

1. per branch, one gather along the height builds the shifted, padded axis (a row gather
   copies whole rows: in onnxruntime as cheap as an add; a column gather is 15x slower, so the
   width branch runs on the transposed map);
2. a convolution with kernel and stride ``(p, 1)`` is the region fold and the region MLP's
   first 1x1 convolution in one: its weight is the 1x1 weight read as ``(K, C, p, 1)``;
3. the branch weights ``a`` come from the branches' means, read off the hidden maps
   (:func:`region_branch_mean`), without any full-size branch output;
4. ``proj . diag(a_k)`` is folded into each branch's last convolution, per image, as batched
   matrix products over the flattened map (symbolic batch size; the weights differ per image);
   folding costs about ``C^3 (p + 1)`` multiply-adds per image, so modules whose maps are
   expected to be small (``HireModule.graph_fold=False``: HireMLP's last stage by default)
   keep ``proj`` as a convolution instead;
5. the height branch's ``C * p`` output channels, read as ``p`` blocks of rows, hold every
   row of the un-folded map: one row gather un-folds, crops the padding and undoes the shift.

Sizes are used as the recorder sees them (a ``SymInt`` under dynamo, a 0-d tensor under
``torch.jit.trace``), so one graph serves every input size: position ``r`` of the shifted,
padded axis reads input position ``(r - shift) mod length`` (``'replicate'`` clamps ``r`` to
the last data position first, ``'constant'`` reads zeros past the end), which keeps the eager
plain path's numbers (:mod:`~mmhire.models.layers.region_rearrange`), also for pads larger than
the map. The graph holds no custom operator and no in-place update.
"""
import contextlib

import torch
import torch.nn.functional as F

_count_plain = False


@contextlib.contextmanager
def count_plain_path():
    """While active, recorded Hire modules run the plain path instead of the graph path (its
    sizes frozen at the example's, so the graph serves only that size): what an operation
    counter should see to count the released formulation's multiply-adds
    (:func:`mmhire.analysis.complexity.count_macs`), whatever formulation runs."""
    global _count_plain
    saved, _count_plain = _count_plain, True
    try:
        yield
    finally:
        _count_plain = saved


def counting_plain_path() -> bool:
    return _count_plain


def is_graph_capture() -> bool:
    """Whether the model is being recorded rather than run: ``torch.jit.trace`` (also inside
    ``torch.onnx.export(..., dynamo=False)``), ``torch.export`` (also inside the dynamo ONNX
    exporter) or ``torch.compile``."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _as_tensor(length, device) -> torch.Tensor:
    """A size as a 0-d int64 tensor. (``remainder`` by a ``SymInt`` fails in the dynamo ONNX
    exporter's translation; by a tensor every recorder handles it.)"""
    return torch.full((), length, dtype=torch.long, device=device)


def shift_pad_index(length, region_size: int, shift: int, pad_mode: str,
                    device=None) -> torch.Tensor:
    """Source positions of the shifted axis padded to a multiple of ``region_size``:
    position ``r`` reads input position ``index[r]``. For ``pad_mode='constant'`` the padded
    positions read a real position too; :func:`region_hidden` zeroes them."""
    n = _as_tensor(length, device)
    padded = (length + region_size - 1) // region_size * region_size
    pos = torch.arange(padded, device=device)
    if pad_mode == 'replicate':  # the padding repeats the shifted map's last position
        pos = torch.minimum(pos, n - 1)
    return torch.remainder(pos - shift, n)


def unfold_index(length, regions, region_size: int, shift: int, device=None) -> torch.Tensor:
    """Where output row ``q`` of a height branch sits in its un-folded rows.

    The branch's last convolution gives ``C * p`` channels in the released channel-major order
    (channel ``c * p + i``: token ``i`` of channel ``c``); read as ``(C, p * regions)`` rows,
    row ``i * regions + j`` is row ``j * p + i`` of the shifted, padded axis. Output row ``q``
    is that axis' row ``(q + shift) mod length`` (cropping the padding, undoing the shift).
    """
    rows = torch.remainder(torch.arange(length, device=device) + shift,
                           _as_tensor(length, device))
    return torch.remainder(rows, region_size) * regions + torch.div(
        rows, region_size, rounding_mode='floor')


def region_hidden(x: torch.Tensor, region_size: int, shift: int, pad_mode: str,
                  fc1: torch.nn.Conv2d, norm, act) -> torch.Tensor:
    """The hidden map of a region MLP along the height, ``(B, K, Hp / p, W)``: shift and pad
    (one row gather), then fold and ``fc1`` as one ``(p, 1)``-strided convolution."""
    b, c, length = x.shape[:3]
    p = region_size
    index = shift_pad_index(length, p, shift, pad_mode, x.device)
    x = x.index_select(2, index)
    if pad_mode == 'constant':
        is_data = torch.arange(index.shape[0], device=x.device) < _as_tensor(length, x.device)
        x = torch.where(is_data.reshape(-1, 1), x, 0.)
    weight = fc1.weight.reshape(fc1.out_channels, c, p, 1)  # input c * p + i -> tap i of c
    return act(norm(F.conv2d(x, weight, fc1.bias, stride=(p, 1))))


def region_branch_mean(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       length) -> torch.Tensor:
    """Mean over the data positions of a height branch's output, ``(B, C)``, from its hidden
    map ``(B, K, regions, W)``; ``weight`` ``(C, p, K)`` and ``bias`` ``(C, p)`` are the
    branch's last convolution. (The eager fast path's
    :func:`~mmhire.models.layers.branch_folding.region_branch_mean`, written with a mask
    instead of Python arithmetic on the sizes.)"""
    b, k, regions, across = hidden.shape
    c, p = bias.shape
    # holds[i, j]: region j's token i is a data row, not padding
    rows = (torch.arange(regions, device=hidden.device).reshape(1, -1) * p
            + torch.arange(p, device=hidden.device).reshape(-1, 1))
    holds = (rows < _as_tensor(length, hidden.device)).to(hidden.dtype)  # (p, regions)
    token_sums = hidden.sum(dim=3) @ holds.t()  # (B, K, p): hidden summed over token i's rows
    out = F.linear(token_sums.transpose(1, 2).reshape(b, p * k),
                   weight.reshape(c, p * k)) + (bias * holds.sum(1)).sum(1) * across
    return out / (length * across)


def hire_graph(module, x: torch.Tensor) -> torch.Tensor:
    """:class:`~mmhire.models.layers.HireModule` ``module`` on ``x`` ``(B, C, H, W)``, as
    one graph of standard operators (see the module docstring); the plain path's numbers."""
    b, c, height, width = x.shape
    p, shift, pad_mode, act = module.region_size, module.shift, module.pad_mode, module.act
    mlp_h2, mlp_w2, mlp_c, proj = module.mlp_h2, module.mlp_w2, module.mlp_c, module.proj
    x_t = x.transpose(2, 3)  # the width branch is a height branch of the transposed map
    hidden_h = region_hidden(x, p, shift, pad_mode, module.mlp_h1, module.mlp_h1_norm, act)
    hidden_w = region_hidden(x_t, p, shift, pad_mode, module.mlp_w1, module.mlp_w1_norm, act)
    h2_weight, w2_weight = (conv.weight.reshape(c, p, -1) for conv in (mlp_h2, mlp_w2))
    h2_bias, w2_bias = (conv.bias.reshape(c, p) for conv in (mlp_h2, mlp_w2))

    # sum / n, not mean: mean's backward materialises a full-size gradient
    mean = (region_branch_mean(hidden_h, h2_weight, h2_bias, height)
            + region_branch_mean(hidden_w, w2_weight, w2_bias, width)
            + F.linear(x.sum(dim=(2, 3)) / (height * width), mlp_c.weight.reshape(c, c),
                       mlp_c.bias))
    a = module.reweight(mean.reshape(b, c, 1, 1)).reshape(b, c, 3).softmax(dim=2)

    if not module.graph_fold:
        return _combine_unfolded(module, x, a, hidden_h, hidden_w)

    # proj . diag(a_k), per image: (B, C, C) [b, o, c] for k = height, width, channel
    scaled = [proj.weight.reshape(1, c, c) * a[:, :, k].reshape(b, 1, c) for k in range(3)]
    # Every output position takes exactly one row of the height branch, so the channel
    # branch's and proj's biases ride on the height branch's. The biases enter the batched
    # products as weights of a constant channel of the (small) hidden maps: a full-size add
    # each would cost as much as the product.
    # (a product and a sum, not a matrix product by a (C, 1) vector: inductor's decomposition
    # of that product's backward guards on the batch size, and dynamic=True recompiled)
    extra_bias = ((scaled[2] * mlp_c.bias.reshape(1, 1, c)).sum(2, keepdim=True)
                  + proj.bias.reshape(c, 1))  # (B, C, 1)

    def region_branch(scaled_proj, weight, bias, hidden, length, extra):
        regions, across = hidden.shape[2], hidden.shape[3]
        folded = (scaled_proj @ weight.reshape(c, -1)).reshape(b, c * p, -1)  # [b, o*p+i, k]
        folded_bias = (scaled_proj @ bias + extra).reshape(b, c * p, 1)
        hidden = hidden.reshape(b, -1, regions * across)
        ones = torch.ones_like(hidden[:, :1])
        out = torch.cat([folded, folded_bias], 2) @ torch.cat([hidden, ones], 1)
        return _unfold_rows(out.reshape(b, c * p, regions, across), length, p, shift)

    out_h = region_branch(scaled[0], h2_weight, h2_bias, hidden_h, height, extra_bias)
    out_w = region_branch(scaled[1], w2_weight, w2_bias, hidden_w, width, 0.).transpose(2, 3)
    out_c = (scaled[2] @ mlp_c.weight.reshape(c, c)) @ x.reshape(b, c, height * width)
    return out_c.reshape(b, c, height, width) + out_h + out_w


def _unfold_rows(out: torch.Tensor, length, region_size: int, shift: int) -> torch.Tensor:
    """A height branch's output ``(B, C * p, regions, W)`` (channel-major) un-folded, cropped
    and un-shifted to ``(B, C, length, W)``: one row gather (:func:`unfold_index`)."""
    b, cp, regions, across = out.shape
    index = unfold_index(length, regions, region_size, shift, out.device)
    return out.reshape(b, cp // region_size, region_size * regions, across).index_select(2, index)


def _combine_unfolded(module, x, a, hidden_h, hidden_w):
    """The graph path's end without folding ``proj`` and ``a`` into per-image weights: the
    branches' last convolutions, the weighted sum and ``proj`` as in the plain path. Folding
    costs about ``C^3 (p + 1)`` multiply-adds per image and saves ``C^2`` per position, so
    this is the cheaper end on maps of fewer than ``C (p + 1)`` positions (see
    :attr:`HireModule.graph_fold`)."""
    p, shift = module.region_size, module.shift
    height, width = x.shape[2:]
    h = _unfold_rows(module.mlp_h2(hidden_h), height, p, shift)
    w = _unfold_rows(module.mlp_w2(hidden_w), width, p, shift).transpose(2, 3)
    a = a.permute(2, 0, 1).unsqueeze(-1).unsqueeze(-1)  # (3, B, C, 1, 1)
    return module.proj(h * a[0] + w * a[1] + module.mlp_c(x) * a[2])


def pad_to_min_size(x: torch.Tensor, min_size: int) -> torch.Tensor:
    """Zero-pad the bottom / right of ``(B, C, H, W)`` up to ``min_size`` on each side.

    In eager runs the sizes are ints and nothing is copied unless a side is short. Under
    ``torch.jit.trace`` the sizes are 0-d tensors and the pad amounts become part of the
    graph, so a small input recorded at a large size still gets its pad. Under dynamo the
    sizes are ``SymInt``s and the comparison is a guard (``torch.compile`` recompiles for an
    input on the other side of it; ``torch.export`` takes the recorded side): a ``max`` there
    would follow every later size expression through the network and slow symbolic shape
    reasoning down by orders of magnitude.
    """
    h, w = x.shape[-2:]
    if isinstance(h, torch.Tensor):
        pad_h, pad_w = (torch.clamp(min_size - s, min=0) for s in (h, w))
        return F.pad(x, (0, pad_w, 0, pad_h))
    if h < min_size or w < min_size:
        x = F.pad(x, (0, max(min_size - w, 0), 0, max(min_size - h, 0)))
    return x
