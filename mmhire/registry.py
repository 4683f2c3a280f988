"""Where mmhire registers what it adds to OpenMMLab.

Everything goes into mmengine's root registries (``MODELS``, ``HOOKS``, ``FUNCTIONS``,
``OPTIM_WRAPPERS``). mmdet's and mmseg's registries are their children, and a child registry
falls back to its parents for names it does not hold, so ``type='HireMLP'`` or
``type='RNGStateHook'`` builds from an MMDetection config (default scope ``mmdet``), an
MMSegmentation config (``mmseg``) or any other OpenMMLab toolbox, without importing either here.
Each class registers itself where it is defined (``@MODELS.register_module()``).
"""
from mmengine.registry import FUNCTIONS, HOOKS, MODELS, OPTIM_WRAPPERS

__all__ = ['MODELS', 'HOOKS', 'FUNCTIONS', 'OPTIM_WRAPPERS']
