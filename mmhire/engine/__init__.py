from .hooks import FuseHireMLPHook, RNGStateHook
from .rng_state import get_rng_state, seed_worker_from_torch, set_rng_state

__all__ = ['FuseHireMLPHook', 'RNGStateHook', 'get_rng_state', 'set_rng_state',
           'seed_worker_from_torch']
