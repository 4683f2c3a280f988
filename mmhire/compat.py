"""Safe loading of mmengine checkpoints on torch >= 2.6, without turning ``weights_only`` off.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses every class not on an
allow-list. mmengine 0.10.7 writes a few such objects into the checkpoints its Runner saves (its
``HistoryBuffer`` of logged scalars and the numpy arrays / scalars inside it and in ``meta``),
so ``--resume``, ``load_from=`` and ``tools/test.py`` die with ``UnpicklingError: Weights only
load failed``. Setting ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would "fix" that by letting any
checkpoint run code on load. Instead, importing mmhire adds exactly those types to torch's
allow-list, so every other pickled global is still refused.

One entry needs care: ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``. Allow-listing the real ``builtins.getattr`` would let a
crafted checkpoint reach any attribute of any allow-listed object, so the name
``builtins.getattr`` is mapped to :func:`history_buffer_getattr`, which answers only those
lookups and refuses everything else.
"""
import pickle

import numpy as np
import torch

# The statistics methods mmengine's HistoryBuffer defines on its class (and so may pickle).
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _numpy_globals():
    """The numpy objects that pickled arrays, dtypes and scalars refer to.

    numpy 2 pickles arrays through ``numpy._core.multiarray``, numpy 1 through
    ``numpy.core.multiarray``; both names are listed so files written by either load.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    found = []
    for module_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        for attr in ('_reconstruct', 'scalar'):
            found.append((getattr(multiarray, attr), f'{module_name}.{attr}'))
    found += [np.ndarray, np.dtype]
    # A dtype is rebuilt as an instance of its class (numpy.dtypes.Float64DType, ...), which
    # the unpickler checks before restoring its state.
    for scalar_type in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                        np.uint32, np.uint64, np.float16, np.float32, np.float64):
        found.append(type(np.dtype(scalar_type)))
    return found


def history_buffer_getattr(obj, name, *default):
    """Stands in for ``builtins.getattr`` while unpickling: only HistoryBuffer's statistics."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS and not default:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Weights only load failed: refusing getattr({obj!r}, {name!r}) in a checkpoint; '
        f'mmhire allows only mmengine HistoryBuffer statistics methods {HISTORY_BUFFER_METHODS}')


def _mmengine_globals():
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')]


def safe_checkpoint_globals():
    """Everything mmhire adds to ``torch.serialization``'s weights-only allow-list."""
    return _numpy_globals() + _mmengine_globals()


def install():
    """Add :func:`safe_checkpoint_globals` to torch's allow-list (idempotent)."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4 has no weights-only default to work around
        return
    add(safe_checkpoint_globals())


install()


# ---------------------------------------------------------------------------------------------
# mmdeploy 1.3.1 (the newest release) on torch >= 2.9. Applied by
# :func:`mmhire.deploy.mmdeploy_export.deploy_model`, not on import: they change torch.onnx.

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

    from mmhire.deploy.adaptive_pool import adaptive_avg_pool2d_exact
    if getattr(mmdeploy_exact_adaptive_pool, 'done', False):
        return

    @FUNCTION_REWRITER.register_rewriter(
        func_name='torch.nn.functional.adaptive_avg_pool2d', backend='onnxruntime')
    def adaptive_avg_pool2d__exact(input, output_size):
        return adaptive_avg_pool2d_exact(input, output_size)

    mmdeploy_exact_adaptive_pool.done = True
