"""Where mmhire registers its models.

``HireMLP`` goes into mmengine's root ``MODELS`` registry. mmdet's and mmseg's ``MODELS`` are its
children, and a child registry falls back to its parents for names it does not hold, so
``type='HireMLP'`` builds from an MMDetection config (default scope ``mmdet``), an
MMSegmentation config (``mmseg``) or any other OpenMMLab toolbox, without importing either here.
"""
from mmengine.registry import MODELS

__all__ = ['MODELS']
