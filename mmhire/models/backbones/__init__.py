from .convnext import ConvNeXt
from .hire_mlp import HireMLP, fuse_hire_mlps
from .mlp_mixer import MlpMixer

__all__ = ['ConvNeXt', 'HireMLP', 'MlpMixer', 'fuse_hire_mlps']
