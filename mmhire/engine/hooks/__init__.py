from .fuse_hook import FuseHireMLPHook
from .rng_state_hook import RNGStateHook

__all__ = ['FuseHireMLPHook', 'RNGStateHook']
