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
