from mmhire.registry import MODELS

from .backbones import HireMLP, fuse_hire_mlps

MODELS.register_module(module=HireMLP)

__all__ = ['HireMLP', 'fuse_hire_mlps']
