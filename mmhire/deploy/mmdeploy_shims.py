"""Shims for mmdeploy 1.3.1 (the newest release) on torch >= 2.9 and mmcv 2.x.

Applied by :func:`mmhire.deploy.mmdeploy_export.deploy_model` before it exports, not on
import: they change ``torch.onnx``. Each is idempotent. mmdeploy's rewrite of the RPN lives
next to them, in :mod:`.rpn_nms`.
"""
import torch


def mmdeploy_export_uses_torchscript():
    """mmdeploy calls ``torch.onnx.export(...)`` without ``dynamo=``; since torch 2.9 that means
    the dynamo exporter, which mmdeploy's rewriters do not work with (``KeyError: -1`` when
    its rewriter context exits). Make ``dynamo=False`` the default of ``torch.onnx.export``, as
    it was when mmdeploy was written; an explicit ``dynamo=`` still wins. Idempotent."""
    import functools
    export = torch.onnx.export
    if getattr(export, '_mmhire_torchscript_default', False):
        return

    @functools.wraps(export)
    def export_torchscript_by_default(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return export(*args, **kwargs)

    export_torchscript_by_default._mmhire_torchscript_default = True
    torch.onnx.export = export_torchscript_by_default


def restore_onnx_cast_long():
    """mmcv's RoIAlign symbolic (which mmdeploy uses for Mask R-CNN) imports ``_cast_Long`` from
    ``torch.onnx.symbolic_opset9``, which torch removed; put back what it was: an ONNX ``Cast``
    to int64. Idempotent; does nothing where torch still has it."""
    from torch.onnx import symbolic_opset9
    if hasattr(symbolic_opset9, '_cast_Long'):
        return

    def _cast_Long(g, input, non_blocking):  # noqa: N802 (torch's own name)
        return g.op('Cast', input, to_i=torch.onnx.TensorProtoDataType.INT64)

    symbolic_opset9._cast_Long = _cast_Long


def mmdeploy_exact_adaptive_pool():
    """Replace mmdeploy's onnxruntime rewrite of ``F.adaptive_avg_pool2d`` (a fixed-kernel
    ``avg_pool2d`` from the export size: wrong for UperNet's pyramid pooling at most sizes)
    with :func:`mmhire.deploy.adaptive_pool.adaptive_avg_pool2d_exact`. Idempotent."""
    from mmdeploy.core import FUNCTION_REWRITER

    from .adaptive_pool import adaptive_avg_pool2d_exact
    if getattr(mmdeploy_exact_adaptive_pool, 'done', False):
        return

    @FUNCTION_REWRITER.register_rewriter(
        func_name='torch.nn.functional.adaptive_avg_pool2d', backend='onnxruntime')
    def adaptive_avg_pool2d__exact(input, output_size):
        return adaptive_avg_pool2d_exact(input, output_size)

    mmdeploy_exact_adaptive_pool.done = True
