"""Adaptive average pooling that exports exactly, for every input size.

mmdeploy 1.3.1 rewrites ``F.adaptive_avg_pool2d`` (UperNet's pyramid pooling: scales 1, 2, 3,
6) into ``avg_pool2d`` with ``kernel = stride = int(size / bins)``, computed from the export
size and frozen into the graph. That is wrong whenever ``bins`` does not divide the map
(PyTorch's bins overlap and differ in length; a 16x16 map at scale 3 or 6 is one) and at every
size other than the export size, and fails outright for maps smaller than ``bins``. Here the
pooling is two products with bin-averaging matrices built from the recorded sizes: bin ``i`` of
``n`` over a length ``L`` averages positions ``floor(i L / n)`` to ``ceil((i + 1) L / n) - 1``,
PyTorch's definition, in one graph for every size.
"""
import torch
from torch.nn.modules.utils import _pair


def bin_average_matrix(length, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``(bins, length)``: row ``i`` averages the positions of adaptive-pooling bin ``i``."""
    i = torch.arange(bins, device=like.device)
    start = (i * length) // bins
    end = ((i + 1) * length + bins - 1) // bins
    j = torch.arange(length, device=like.device)
    inside = ((j.unsqueeze(0) >= start.unsqueeze(1)) & (j.unsqueeze(0) < end.unsqueeze(1)))
    inside = inside.to(like.dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d_exact(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` for ``(B, C, H, W)`` as matrix products."""
    out_h, out_w = _pair(output_size)
    h, w = x.shape[-2:]
    rows = bin_average_matrix(h, out_h if out_h is not None else h, x)
    cols = bin_average_matrix(w, out_w if out_w is not None else w, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
