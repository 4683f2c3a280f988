from mmhire.registry import MODELS

from .backbones import HireMLP

MODELS.register_module(module=HireMLP)

__all__ = ['HireMLP']
