"""Whether the model is being recorded rather than run, and what a recorder should see."""
import contextlib

import torch

_count_plain = False


@contextlib.contextmanager
def count_plain_path():
    """While active, recorded Hire modules run the plain path instead of the fast path (its
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
    exporter) or ``torch.compile``. Sizes may then be symbolic: no Python decision on them."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def is_exporting() -> bool:
    """Whether the model is being recorded for a file (ONNX, ``torch.export``) rather than
    compiled: there a transpose of a map is a copy (a ``Transpose`` node), where an eager run
    or ``torch.compile`` takes it as a view or fuses it."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()
