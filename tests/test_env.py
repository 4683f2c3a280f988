import subprocess
import sys

import mmhire


def test_package_imports_and_registers():
    from mmengine.registry import MODELS
    assert MODELS.get('HireMLP') is mmhire.HireMLP
    assert isinstance(mmhire.__version__, str)


def test_env_report_runs():
    out = subprocess.run([sys.executable, '-m', 'mmhire.env'], capture_output=True, text=True,
                         check=True).stdout
    for key in ('PyTorch:', 'mmcv:', 'mmcv ops: loaded', 'mmengine:', 'mmdet:', 'mmseg:', 'numpy:',
                'CPU:', 'CUDA available:', 'onnxruntime:', 'mmdeploy:'):
        assert key in out, out
