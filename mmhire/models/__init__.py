from .backbones import HireMLP, fuse_hire_mlps

__all__ = ['HireMLP', 'fuse_hire_mlps']
