"""Complexity (params, MACs) and speed measurement of backbones, for the tools and the docs."""
from .complexity import (RELEASED, backbone_complexity, classifier_params, count_macs,
                         model_complexity)

__all__ = ['RELEASED', 'backbone_complexity', 'classifier_params', 'count_macs',
           'model_complexity']
