from .hire_block import ConvNormAct, HireBlock
from .hire_module import ConvMlp, HireModule
from .region_rearrange import PAD_MODES

__all__ = ['ConvMlp', 'ConvNormAct', 'HireBlock', 'HireModule', 'PAD_MODES']
