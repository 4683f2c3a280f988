"""The Hire module as ``torch.compile`` runs it: the eager fast path in standard operators.

Inductor compiles this formulation (:func:`hire_compiled`) whenever a Hire module is compiled
(``torch.compile``, mmengine's ``compile=True``). The graph path
(:mod:`~mmhire.models.layers.traceable`) stays for recorders whose one graph must serve every
input size (ONNX export, ``torch.jit.trace``, ``torch.export``); under ``torch.compile`` a size
may be a guard instead, and an input on the other side of it compiles again. That buys the
fast path's memory layout, which the graph path's row gathers cannot have:

- shifts, padding and un-folding are slices, concatenations and views, whose backward is a
  copy; the backward of a row gather is a scatter-add, which made the compiled training step of
  a stage-1 Hire module of HireMLP-S 1.6x slower than the eager fast path;
- every map stays channels-last (positions-major), and the branch weights ``proj . diag(a_k)``
  are folded into per-image 1x1 convolutions with position-major outputs
  (:func:`~mmhire.models.layers.branch_folding.fold_into_proj`), as in the eager fast path:
  oneDNN's 1x1 convolutions on channels-last maps ran 2x-3x faster than the same products as
  batched matrix products on a 2-core CPU. The un-fold then reads whole channel vectors, and
  the three branches, the biases, the crop and the un-shift meet in one elementwise kernel.

Per-image convolutions need a batch of one: dynamo shows a symbolic batch size to the code as
an int, and a loop over it would pin it. Larger batches take batched matrix products over the
same positions-major maps. Maps smaller than the region size or not longer than the shift (a
few rows at the last stages of small inputs) and modules that keep ``proj`` unfolded
(``graph_fold=False``: HireMLP's last stage, small maps; there inductor 2.13 failed to lower
the un-fold with symbolic sizes) take the graph path, whose gathers wrap around small maps.
"""
import torch
import torch.nn.functional as F

from .branch_folding import fold_into_proj
from .traceable import hire_graph, region_branch_mean


def compiles_static_sizes() -> bool:
    """Whether ``torch.compile`` (not ``torch.export``) is recording, without
    ``dynamic=True``: then :func:`hire_compiled` runs. Its slices make guards on symbolic
    sizes (an empty pad, strides that coincide), and with ``dynamic=True`` every input size
    is symbolic and promised one graph, so that keeps the graph path, whose gathers need no
    guard. (With ``dynamic=None``, the default, sizes start static; only the batch marked
    dynamic is symbolic, which :func:`hire_compiled` keeps free of guards.)"""
    return (torch.compiler.is_compiling() and not torch.compiler.is_exporting()
            and torch._dynamo.config.assume_static_by_default)


def takes_compiled_path(module, height, width) -> bool:
    """Whether :func:`hire_compiled` handles a ``height x width`` map itself (under dynamo a
    guard on the sizes): every axis at least one region long and longer than the shift, so
    the shift and the padding are each one slice of the map."""
    least = max(module.region_size, module.shift + 1)
    return height >= least and width >= least


def _shift_pad(x: torch.Tensor, dim: int, region_size: int, shift: int,
               pad_mode: str) -> torch.Tensor:
    """Roll the channels-last ``x`` ``(B, H, W, C)`` by ``shift`` along ``dim`` (1 or 2) and
    pad it to a multiple of ``region_size``; the plain path's
    :func:`~mmhire.models.layers.region_rearrange.shift_and_pad` for axes of at least
    ``max(region_size, shift + 1)`` positions."""
    length = x.shape[dim]
    if shift:
        x = torch.cat([x.narrow(dim, length - shift, shift), x.narrow(dim, 0, length - shift)],
                      dim)
    if region_size == 1:
        return x
    # p - 1 positions of padding, then the padded length: a pad of symbolic length would be
    # a guard on whether it is 0 (a new graph for every size of the other parity)
    if pad_mode == 'circular':
        tail = x.narrow(dim, 0, region_size - 1)
    elif pad_mode == 'replicate':  # the last position of the shifted map, repeated
        tail = x.narrow(dim, length - 1, 1).expand(
            [region_size - 1 if d == dim else -1 for d in range(x.dim())])
    else:
        tail = x.new_zeros([region_size - 1 if d == dim else s for d, s in enumerate(x.shape)])
    padded = (length + region_size - 1) // region_size * region_size
    return torch.cat([x, tail], dim).narrow(dim, 0, padded)


def _crop_unshift(y: torch.Tensor, dim: int, length, shift: int) -> torch.Tensor:
    """The first ``length`` positions of the shifted, padded axis ``dim``, rolled back."""
    if shift:
        return torch.cat([y.narrow(dim, shift, length - shift), y.narrow(dim, 0, shift)], dim)
    return y.narrow(dim, 0, length)


def _region_hidden(x_last, dim, module, fc1, norm):
    """The hidden map of the region MLP along ``dim`` (1 = height, 2 = width of the
    channels-last ``x_last``): shift and pad, then fold and ``fc1`` as one convolution with
    kernel and stride ``p`` along the axis. ``(B, K, Hp / p, W)`` or ``(B, K, H, Wp / p)``,
    channels-last."""
    p, c = module.region_size, x_last.shape[3]
    padded = _shift_pad(x_last, dim, p, module.shift, module.pad_mode).permute(0, 3, 1, 2)
    kernel = (p, 1) if dim == 1 else (1, p)
    weight = fc1.weight.reshape(fc1.out_channels, c, *kernel)  # input c * p + i: tap i of c
    return module.act(norm(F.conv2d(padded, weight, fc1.bias, stride=kernel)))


def _unfold(out: torch.Tensor, dim: int, region_size: int, length, shift: int):
    """A branch's output ``(B, p * C, R, A)`` (``dim=1``: regions along the height) or
    ``(B, p * C, A, R)`` (``dim=2``), position-major channels on channels-last memory, as the
    un-folded, cropped and un-shifted ``(B, H, W, C)`` (views, then one slice pair)."""
    b, pc, rows, cols = out.shape
    p = region_size
    out = out.permute(0, 2, 3, 1).reshape(b, rows, cols, p, pc // p)  # [b, r, a, i, c]
    if dim == 1:
        out = out.permute(0, 1, 3, 2, 4).reshape(b, rows * p, cols, pc // p)
    else:
        out = out.reshape(b, rows, cols * p, pc // p)
    return _crop_unshift(out, dim, length, shift)


def hire_compiled(module, x: torch.Tensor, batched: bool = None) -> torch.Tensor:
    """:class:`~mmhire.models.layers.HireModule` ``module`` on ``x`` ``(B, C, H, W)``, the
    plain path's numbers; the result has channels-last strides (see the module docstring).
    ``batched`` picks batched matrix products over per-image convolutions for the folded
    weights; by default every batch larger than one takes them."""
    b, c, height, width = x.shape
    if batched is None:
        # (a guard on the batch size under dynamo, which shows a symbolic size to the code as
        # an int: a loop over the images would pin it)
        batched = b != 1
    if not module.graph_fold or not takes_compiled_path(module, height, width):
        return hire_graph(module, x)
    p, shift = module.region_size, module.shift
    x_last = x.permute(0, 2, 3, 1)  # (B, H, W, C): a view of a channels-last map
    hidden_h = _region_hidden(x_last, 1, module, module.mlp_h1, module.mlp_h1_norm)
    hidden_w = _region_hidden(x_last, 2, module, module.mlp_w1, module.mlp_w1_norm)
    mlp_h2, mlp_w2, mlp_c = module.mlp_h2, module.mlp_w2, module.mlp_c
    # sum / n, not mean: mean's backward materialises a full-size gradient
    # (the graph path's branch means: their masks keep symbolic sizes free of guards)
    mean = (region_branch_mean(hidden_h, mlp_h2.weight.reshape(c, p, -1),
                               mlp_h2.bias.reshape(c, p), height)
            + region_branch_mean(hidden_w.transpose(2, 3), mlp_w2.weight.reshape(c, p, -1),
                                 mlp_w2.bias.reshape(c, p), width)
            + F.linear(x_last.sum(dim=(1, 2)) / (height * width), mlp_c.weight.reshape(c, c),
                       mlp_c.bias))
    a = module.reweight(mean.reshape(b, c, 1, 1)).reshape(b, c, 3).softmax(dim=2)

    if not batched:  # per-image convolutions, as the eager fast path
        outs = []
        for i in range(b):
            w = fold_into_proj(module.proj, a[i], mlp_h2, mlp_w2, mlp_c)
            out_h = F.conv2d(hidden_h[i:i + 1], w.height, w.height_bias)
            out_w = F.conv2d(hidden_w[i:i + 1], w.width, w.width_bias)
            out_c = F.conv2d(x[i:i + 1], w.channel, w.channel_bias)
            outs.append(out_c.permute(0, 2, 3, 1) + _unfold(out_h, 1, p, height, shift)
                        + _unfold(out_w, 2, p, width, shift))
        out = torch.cat(outs) if b > 1 else outs[0]
    else:
        out = _combine_batched(module, x_last, a, hidden_h, hidden_w)
    return out.permute(0, 3, 1, 2)


def _combine_batched(module, x_last, a, hidden_h, hidden_w):
    """The folded products for a batch: per-image weights as batched matrix products over
    the positions-major maps. Returns ``(B, H, W, C)``."""
    b, height, width, c = x_last.shape
    p, shift, proj = module.region_size, module.shift, module.proj
    scaled = proj.weight.reshape(1, 1, c, c) * a.permute(0, 2, 1).unsqueeze(2)  # [b, k, o, c]

    def branch(scaled_proj, conv, hidden, dim, length):
        weight = torch.einsum('boc,cik->biok', scaled_proj, conv.weight.reshape(c, p, -1))
        bias = torch.einsum('boc,ci->bio', scaled_proj, conv.bias.reshape(c, p))
        _, k, rows, cols = hidden.shape
        out = hidden.permute(0, 2, 3, 1).reshape(b, rows * cols, k) @ weight.reshape(
            b, p * c, k).transpose(1, 2)
        out = out.reshape(b, rows, cols, p * c) + bias.reshape(b, 1, 1, p * c)
        return _unfold(out.permute(0, 3, 1, 2), dim, p, length, shift)

    channel = scaled[:, 2] @ module.mlp_c.weight.reshape(c, c)  # (B, C, C) [b, o, c]
    channel_bias = scaled[:, 2] @ module.mlp_c.bias + proj.bias  # (B, C)
    out_c = x_last.reshape(b, height * width, c) @ channel.transpose(1, 2)
    return (out_c.reshape(b, height, width, c) + channel_bias.reshape(b, 1, 1, c)
            + branch(scaled[:, 0], module.mlp_h2, hidden_h, 1, height)
            + branch(scaled[:, 1], module.mlp_w2, hidden_w, 2, width))
