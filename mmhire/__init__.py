"""mmhire: the Hire-MLP backbone for MMDetection 3.x and MMSegmentation 1.x.

Importing the package registers ``HireMLP`` (``type='HireMLP'`` in mmdet / mmseg configs) and
``RNGStateHook`` (bitwise-exact resume, ``custom_hooks=[dict(type='RNGStateHook')]``), and
allow-lists mmengine's checkpoint types for ``torch.load(weights_only=True)`` (see
:mod:`mmhire.compat`).
"""
from . import compat  # noqa: F401  (side effect: safe checkpoint loading on this torch)
from .engine import RNGStateHook
from .models import HireMLP
from .version import __version__

__all__ = ['HireMLP', 'RNGStateHook', '__version__']
