"""The random number generators a training step draws from, as checkpointable plain data.

mmengine 0.10 seeds the generators once, when the Runner starts, and does not save them. A
resumed run therefore draws different augmentations, RoI samples and drop-path masks than the
run it continues. :func:`get_rng_state` / :func:`set_rng_state` capture and restore Python's,
NumPy's and torch's (CPU and every CUDA device) generators. The state is kept as tensors, ints
and tuples so that checkpoints holding it still load with ``torch.load(weights_only=True)``.
"""
import os
import random

import numpy as np
import torch

from ..registry import FUNCTIONS


def get_rng_state() -> dict:
    """The current state of every generator a training process draws from."""
    name, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
               float(cached_gauss)),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore generators captured by :func:`get_rng_state`."""
    random.setstate(_as_python_state(state['python']))
    name, keys, pos, has_gauss, cached_gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda_states = state['cuda']
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:  # a different machine: restore the devices both have
            for device, cuda_state in enumerate(cuda_states[:torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, device)


def _as_python_state(state):
    # A checkpoint round trip can turn the tuples of random.getstate() into lists.
    version, internal, gauss = state
    return version, tuple(internal), gauss


@FUNCTIONS.register_module()
def seed_worker_from_torch(worker_id: int) -> None:
    """A dataloader ``worker_init_fn`` that seeds Python and NumPy from the worker's torch seed.

    torch seeds each worker with ``base_seed + worker_id``, where ``base_seed`` is drawn from the
    main process's generator every time the dataloader starts its workers (each epoch unless
    ``persistent_workers``). Seeding NumPy and Python from it, plus the rank, gives every worker,
    epoch and rank its own augmentation stream, and that stream follows the main process's
    generator, which :class:`~mmhire.engine.RNGStateHook` restores on resume. (mmengine's default
    gives a worker the same seed every epoch.) Use it as
    ``train_dataloader = dict(worker_init_fn=dict(type='seed_worker_from_torch'))``.
    """
    rank = int(os.environ.get('RANK', '0'))
    seed = (torch.initial_seed() + 1_000_003 * rank) % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
