"""Checkpoint loading: safe unpickling, downloads, the released / mmengine layouts, loud mismatches.

Every checkpoint mmhire reads goes through :func:`load_checkpoint_file`, which unpickles with
``weights_only=True`` (plain tensors and containers, plus the few mmengine types allow-listed in
:mod:`mmhire.compat`), so a checkpoint can never run code on load. An ``http(s)://`` checkpoint
is downloaded by torch.hub into its cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``) and read by the same loader. A download only enters the
cache once that loader has read it, so a cut-off download, an error page or a file with pickled
code never sits there looking complete. Importing this module makes mmengine's ``http(s)://``
checkpoint loader this one too (ConvNeXt, MLP-Mixer and mmdet's backbones load through it).
"""
import os
import os.path as osp
import pickle
import socket
import tempfile
from collections import OrderedDict
from typing import Optional
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from mmhire.errors import CheckpointError  # noqa: F401  (raised here; defined with the rest)


# Layouts a checkpoint may come in, in the order they are tried.
STATE_DICT_KEYS = ('state_dict', 'model', 'model_ema')
# Keys of the released classifier that a backbone does not have.
CLASSIFIER_PREFIXES = ('norm.', 'head.')
WRAPPER_PREFIXES = ('module.', 'backbone.')

# The authors' ImageNet-1K weights (github.com/ggjy/Hire-Wave-MLP.pytorch, release "log").
RELEASED_URLS = {arch: 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/'
                       f'hire_mlp_{arch}.pth' for arch in ('tiny', 'small', 'base')}
URL_SCHEMES = ('http', 'https')
# Seconds a download may wait for the server (to connect, or for the next bytes) before it
# fails; a slow download that keeps receiving is never cut off.
DOWNLOAD_TIMEOUT = 60


def is_url(path) -> bool:
    return '://' in str(path)


def cache_path(url: str) -> str:
    """Where torch.hub and mmengine keep the download of ``url``."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


def download(url: str, timeout: float = DOWNLOAD_TIMEOUT, progress: bool = True) -> str:
    """The path of ``url``'s file in torch.hub's cache, downloaded first if the cache lacks it.

    The download goes to a temporary file beside the cached one, which becomes the cached file
    only after :func:`load_checkpoint_file` has read it; on any failure it is removed. Raises
    :class:`CheckpointError` naming the URL, the cache path and the manual fix.
    """
    dst = cache_path(url)
    fix = (f'Download it by other means and save it as {dst}, or point the config at a local '
           f'copy: --cfg-options model.backbone.init_cfg.checkpoint=PATH')
    scheme = urlparse(url).scheme
    if scheme not in URL_SCHEMES or not osp.basename(urlparse(url).path):
        raise CheckpointError(f'cannot download {url!r}: mmhire downloads http:// and https:// '
                              f'URLs of a file; use one of those or a local path')
    if osp.isfile(dst):
        return dst
    try:
        os.makedirs(osp.dirname(dst), exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=osp.dirname(dst), prefix=osp.basename(dst) + '.',
                                       suffix='.unverified')
    except OSError as e:
        raise CheckpointError(f'cannot download {url} into {osp.dirname(dst)} ({e.strerror}): '
                              f'set TORCH_HOME to a folder you can write to') from None
    os.close(fd)
    default_timeout = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)  # torch.hub's urlopen takes no timeout of its own
        try:
            torch.hub.download_url_to_file(url, staging, progress=progress)
        except HTTPError as e:
            raise CheckpointError(f'cannot download {url}: the server answered HTTP {e.code} '
                                  f'{e.reason}. {fix}') from None
        except (URLError, OSError) as e:
            reason = getattr(e, 'reason', None) or e
            reason = getattr(reason, 'strerror', None) or reason
            raise CheckpointError(f'cannot download {url} ({reason}; no network, or no answer '
                                  f'within {timeout:g} s). {fix}') from None
        finally:
            socket.setdefaulttimeout(default_timeout)
        try:
            load_checkpoint_file(staging, source=url)
        except CheckpointError as e:
            raise CheckpointError(f'{e}; nothing was saved in {osp.dirname(dst)}') from None
        os.replace(staging, dst)
        print_log(f'Saved {url} as {dst}', logger='current')
    finally:
        if osp.exists(staging):
            os.remove(staging)
    return dst


def load_checkpoint_file(path: str, map_location='cpu', source: Optional[str] = None):
    """``torch.load`` with ``weights_only=True`` and errors that name the file and the fix.

    ``path`` may be an ``http(s)://`` URL (see :func:`download`); ``source`` is what the
    errors call the file (default: ``path``).
    """
    if is_url(path):
        url, path = path, download(path)
        try:
            return load_checkpoint_file(path, map_location, source)
        except CheckpointError as e:
            raise CheckpointError(f'{e}. It is the cached download of {url}: delete it to '
                                  f'download it again') from None
    path = osp.expanduser(str(path))
    name = repr(source or path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint not found: {path!r}. Download the released Hire-MLP weights '
            f'(python tools/download_weights.py all, or give their URL as the checkpoint), '
            f'or train from scratch with init_cfg=None')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {name} is empty (0 bytes); download it again')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unsafe_detail(str(e))
        if _is_html(path):
            raise CheckpointError(f'checkpoint {name} is an HTML page, not a checkpoint (a '
                                  f'login, error or download page?); get the file itself') from None
        if 'Weights only load failed' in str(e) and 'Unsupported operand' not in detail:
            raise CheckpointError(
                f'refusing to load {name}: it contains pickled Python objects that could run '
                f'code when loaded, and mmhire only loads tensors, plain containers and '
                f"mmengine's own checkpoint types. If you trust the file, re-save just its "
                f'tensors (torch.save(ckpt["state_dict"], new_path)) in a trusted environment. '
                f'torch said: {detail}') from None
        raise CheckpointError(f'checkpoint {name} is corrupted or not a PyTorch file and cannot '
                              f'be unpickled ({detail}); download it again') from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:  # the first sentence suffices
        first_line = str(e).strip().splitlines()[0].split('. ')[0] if str(e).strip() \
            else type(e).__name__
        raise CheckpointError(f'checkpoint {name} is truncated or corrupted and cannot be read '
                              f'({first_line}); download it again') from None


def _is_html(path) -> bool:
    with open(path, 'rb') as f:
        return f.read(512).lstrip().startswith(b'<')


@CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), force=True)
def load_from_url(filename, map_location=None):
    """mmengine's loader for ``http(s)://`` checkpoints, made :func:`load_checkpoint_file`:
    the same cache, with the checks and messages above."""
    return load_checkpoint_file(filename, map_location)


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
