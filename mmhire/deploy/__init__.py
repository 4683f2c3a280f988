"""Taking HireMLP models out of eager PyTorch: ONNX export checked in onnxruntime
(:mod:`.onnx_export`) and whole detectors / segmentors through mmdeploy."""
from .onnx_export import (EXPORTERS, compare_onnxruntime, export_onnx, onnx_op_types,
                          onnxruntime_session, run_onnxruntime)

__all__ = ['EXPORTERS', 'compare_onnxruntime', 'export_onnx', 'onnx_op_types',
           'onnxruntime_session', 'run_onnxruntime']
