"""Complexity (params, MACs) and speed measurement of backbones, and per-object box errors of a
detector's results, for the tools and the docs."""
from .box_errors import count_box_errors, format_box_errors
from .complexity import (RELEASED, backbone_complexity, classifier_params, count_macs,
                         model_complexity)

__all__ = ['RELEASED', 'backbone_complexity', 'classifier_params', 'count_box_errors',
           'count_macs', 'format_box_errors', 'model_complexity']
