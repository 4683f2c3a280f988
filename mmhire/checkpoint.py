"""Checkpoint loading: safe unpickling, the released / mmengine layouts, and loud mismatches.

Every checkpoint mmhire reads goes through :func:`load_checkpoint_file`, which unpickles with
``weights_only=True`` (plain tensors and containers, plus the few mmengine types allow-listed in
:mod:`mmhire.compat`), so a checkpoint can never run code on load.
"""
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Optional

import torch
from mmengine.logging import print_log

from mmhire.errors import CheckpointError  # noqa: F401  (raised here; defined with the rest)


# Layouts a checkpoint may come in, in the order they are tried.
STATE_DICT_KEYS = ('state_dict', 'model', 'model_ema')
# Keys of the released classifier that a backbone does not have.
CLASSIFIER_PREFIXES = ('norm.', 'head.')
WRAPPER_PREFIXES = ('module.', 'backbone.')


def load_checkpoint_file(path: str, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and errors that name the file and the fix."""
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint not found: {path!r}. Download the released Hire-MLP weights '
            f'(hire_mlp_tiny.pth / hire_mlp_small.pth / hire_mlp_base.pth) into checkpoints/, '
            f'or train from scratch with init_cfg=None')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path!r} is empty (0 bytes); download it again')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if 'Weights only load failed' in str(e):
            raise CheckpointError(
                f'refusing to load {path!r}: it contains pickled Python objects that could run '
                f'code when loaded, and mmhire only loads tensors, plain containers and '
                f"mmengine's own checkpoint types. If you trust the file, re-save just its "
                f'tensors (torch.save(ckpt["state_dict"], new_path)) in a trusted environment. '
                f'torch said: {_unsafe_detail(str(e))}') from None
        raise CheckpointError(f'checkpoint {path!r} is corrupted and cannot be unpickled '
                              f'({first_line}); download it again') from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f'checkpoint {path!r} is truncated or corrupted and cannot be read '
                              f'({first_line}); download it again') from None


def _unsafe_detail(message: str) -> str:
    for line in message.splitlines():
        if 'Unsupported global' in line or 'Unsupported operand' in line:
            return line.strip()
    return message.strip().splitlines()[-1] if message.strip() else ''


def extract_state_dict(ckpt, checkpoint_key: Optional[str] = None, source: str = 'checkpoint'):
    """Return the tensor dict inside a loaded checkpoint.

    Understands the released layout (``model``, optionally ``model_ema``), mmengine's
    (``state_dict``) and a plain state dict. ``checkpoint_key`` picks one explicitly.
    """
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{source} holds a {type(ckpt).__name__}, not a dict of weights')
    if checkpoint_key is not None:
        if checkpoint_key not in ckpt:
            raise CheckpointError(f'{source} has no key {checkpoint_key!r}; its top-level keys are '
                                  f'{sorted(map(str, ckpt))[:20]}')
        state = ckpt[checkpoint_key]
    else:
        state = next((ckpt[k] for k in STATE_DICT_KEYS if isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(state, dict):
        raise CheckpointError(f'{source}: the weights are a {type(state).__name__}, not a dict')
    tensors = OrderedDict((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise CheckpointError(f'{source} contains no tensors; its top-level keys are '
                              f'{sorted(map(str, ckpt))[:20]}')
    return tensors


def strip_prefixes(state: dict, prefix: Optional[str] = None) -> dict:
    """Drop the ``module.`` (DDP) and ``backbone.`` (detector) wrappers, or an explicit prefix.

    When some keys carry ``backbone.`` (a whole detector / segmentor), only those are kept.
    """
    prefixes = [prefix] if prefix else list(WRAPPER_PREFIXES)
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            state = OrderedDict((k[len(p):], v) for k, v in state.items() if k.startswith(p))
    return state


def match_state_dict(model_state: dict, state: dict):
    """Split ``state`` into what loads, shape mismatches, missing and unexpected keys."""
    loadable, mismatched, unexpected = OrderedDict(), [], []
    for k, v in state.items():
        if k not in model_state:
            if not k.startswith(CLASSIFIER_PREFIXES):
                unexpected.append(k)
        elif model_state[k].shape != v.shape:
            mismatched.append((k, tuple(v.shape), tuple(model_state[k].shape)))
        else:
            loadable[k] = v
    missing = [k for k in model_state if k not in state]
    return loadable, mismatched, missing, unexpected


def load_pretrained(model: torch.nn.Module, path: str, checkpoint_key: Optional[str] = None,
                    prefix: Optional[str] = None, logger='current') -> dict:
    """Load a released or mmengine checkpoint into a backbone, loudly.

    Raises :class:`CheckpointError` when shapes differ (listing every mismatch) or when no key
    of the checkpoint matches the model; logs the model keys the checkpoint lacks.

    Returns:
        dict: ``loaded``, ``missing`` and ``unexpected`` key lists.
    """
    ckpt = load_checkpoint_file(path)
    state = strip_prefixes(extract_state_dict(ckpt, checkpoint_key, source=repr(path)), prefix)
    model_state = model.state_dict()
    loadable, mismatched, missing, unexpected = match_state_dict(model_state, state)
    arch = getattr(model, 'arch_settings', None)
    if mismatched:
        lines = '\n'.join(f'  {k}: checkpoint {a} vs model {b}' for k, a, b in mismatched[:30])
        more = f'\n  ... and {len(mismatched) - 30} more' if len(mismatched) > 30 else ''
        raise CheckpointError(
            f'checkpoint {path!r} does not fit this model: {len(mismatched)} parameter shapes '
            f'differ (is it another arch? model arch: {arch}):\n{lines}{more}')
    if not loadable:
        raise CheckpointError(
            f'no key of checkpoint {path!r} matches the model, so nothing would be loaded. '
            f'Checkpoint keys look like {list(state)[:5]}; model keys like '
            f'{list(model_state)[:5]}. Pass prefix= or checkpoint_key= in init_cfg if the '
            f'weights sit under another name')
    model.load_state_dict(loadable, strict=False)
    print_log(f'Loaded {len(loadable)} tensors from {path}', logger=logger)
    if missing:
        print_log(f'{len(missing)} model keys are not in the checkpoint and keep their '
                  f'initialisation: {missing}', logger=logger, level=30)
    if unexpected:
        print_log(f'{len(unexpected)} checkpoint keys are not used by the model: {unexpected}',
                  logger=logger, level=30)
    return dict(loaded=list(loadable), missing=missing, unexpected=unexpected)
