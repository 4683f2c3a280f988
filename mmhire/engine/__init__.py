from .amp import (AutocastOptimWrapper, FeatureAutocastHook, cpu_bf16_note, cpu_supports_bf16,
                  feature_autocast, inference_autocast)
from .hooks import FuseHireMLPHook, RNGStateHook
from .rng_state import get_rng_state, seed_worker_from_torch, set_rng_state

__all__ = ['AutocastOptimWrapper', 'FeatureAutocastHook', 'FuseHireMLPHook', 'RNGStateHook',
           'cpu_bf16_note', 'cpu_supports_bf16', 'feature_autocast', 'get_rng_state',
           'inference_autocast', 'set_rng_state', 'seed_worker_from_torch']
