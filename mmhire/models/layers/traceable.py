"""The Hire module's rearrangements on symbolic sizes, for graph capture.

``torch.jit.trace`` (and the TorchScript ONNX exporter that mmdeploy drives), ``torch.export``
(the dynamo ONNX exporter) and ``torch.compile`` record one graph that must hold for every
input size. The eager paths cannot be recorded that way: they pick slices, shortcuts and custom
autograd functions by comparing sizes in Python (a comparison made while recording is frozen
into the graph at the example's size), and the fast path adds into its output in place.

Here the shift, the padding, the fold and their inverses are computed from the sizes as the
recorder sees them (a ``SymInt`` under dynamo, a 0-d tensor under ``torch.jit.trace``), in
one of two ways with the same numbers:

- *gather* (``torch.jit.trace``, both ONNX exporters, ``torch.export``): the source position of
  every row is index arithmetic (``arange``, ``remainder``), then one ``index_select``; ONNX
  ``Range``, ``Mod``, ``Gather``.
- *custom ops* (``torch.compile``): ``mmhire::shift_pad_fold`` and ``mmhire::unfold_crop_unshift``
  (:mod:`~mmhire.models.layers.compile_ops`), opaque to inductor, which miscompiled or failed
  on the index arithmetic written out in the graph (static and dynamic shapes; see there).
  No custom op reaches an exported graph.

Both give the numbers of the eager plain path (:mod:`~mmhire.models.layers.region_rearrange`):
position ``r`` of the shifted, padded axis reads input position ``(r - shift) mod length``
(``'replicate'`` clamps ``r`` to the last data position first, ``'constant'`` reads zeros past
the end), so pads larger than the map keep wrapping as they do there.
"""
import torch
import torch.nn.functional as F

from . import compile_ops
from .region_rearrange import fold_regions, unfold_regions


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
    positions read a real position too; :func:`shift_pad_fold_gather` zeroes them."""
    n = _as_tensor(length, device)
    padded = (length + region_size - 1) // region_size * region_size
    pos = torch.arange(padded, device=device)
    if pad_mode == 'replicate':  # the padding repeats the shifted map's last position
        pos = torch.minimum(pos, n - 1)
    return torch.remainder(pos - shift, n)


def shift_pad_fold_gather(x: torch.Tensor, dim: int, region_size: int, shift: int,
                          pad_mode: str) -> torch.Tensor:
    """:func:`shift_pad_fold` as one gather with computed source positions."""
    length = x.shape[dim]
    index = shift_pad_index(length, region_size, shift, pad_mode, x.device)
    x = x.index_select(dim, index)
    if pad_mode == 'constant':
        is_data = torch.arange(index.shape[0], device=x.device) < _as_tensor(length, x.device)
        x = torch.where(is_data.reshape((-1, 1) if dim == 2 else (-1,)), x, 0.)
    return fold_regions(x, dim, region_size)


def unfold_crop_unshift_gather(x: torch.Tensor, dim: int, length, region_size: int,
                               shift: int) -> torch.Tensor:
    """:func:`unfold_crop_unshift` as one gather: output position ``q`` reads position
    ``(q + shift) mod length`` of the unfolded axis."""
    x = unfold_regions(x, dim, region_size)
    back = torch.remainder(torch.arange(length, device=x.device) + shift,
                           _as_tensor(length, x.device))
    return x.index_select(dim, back)


def _compiling_not_exporting() -> bool:
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def shift_pad_fold(x: torch.Tensor, dim: int, region_size: int, shift: int,
                   pad_mode: str) -> torch.Tensor:
    """Shift, pad and fold one axis: ``(B, C, H, W) -> (B, C * p, Hp / p, W)`` for ``dim=2``,
    ``(B, C * p, H, Wp / p)`` for ``dim=3``; channel ``c * p + i`` holds token ``i`` of each
    region (the released order). A custom op under ``torch.compile``, a gather otherwise (see
    the module docstring)."""
    if _compiling_not_exporting():
        return compile_ops.shift_pad_fold(x, dim, region_size, shift, pad_mode)
    return shift_pad_fold_gather(x, dim, region_size, shift, pad_mode)


def unfold_crop_unshift(x: torch.Tensor, dim: int, length, region_size: int,
                        shift: int) -> torch.Tensor:
    """The inverse of :func:`shift_pad_fold` for a branch's output: unfold the regions, drop
    the padding, undo the shift."""
    if _compiling_not_exporting():
        return compile_ops.unfold_crop_unshift(x, dim, length, region_size, shift)
    return unfold_crop_unshift_gather(x, dim, length, region_size, shift)


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
