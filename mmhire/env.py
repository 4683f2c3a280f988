"""Print the versions that matter for a bug report: ``python -m mmhire.env``."""
import importlib
import os
import platform
import sys


def _version(module_name):
    try:
        return importlib.import_module(module_name).__version__
    except Exception as e:  # report, never crash: this is what users paste when things break
        return f'not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""})'


def collect_env() -> dict:
    info = {
        'Python': sys.version.replace('\n', ' '),
        'Platform': platform.platform(),
        'CPU': f'{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores',
    }
    try:
        import torch
        info['PyTorch'] = torch.__version__
        info['PyTorch threads'] = str(torch.get_num_threads())
        info['CUDA available'] = str(torch.cuda.is_available())
        if torch.cuda.is_available():
            info['CUDA'] = str(torch.version.cuda)
            for i in range(torch.cuda.device_count()):
                info[f'GPU {i}'] = torch.cuda.get_device_name(i)
    except Exception as e:
        info['PyTorch'] = f'not importable ({e})'
    info['mmcv'] = _version('mmcv')
    try:
        from mmcv.ops import RoIAlign, nms  # noqa: F401
        info['mmcv ops'] = 'loaded (nms, RoIAlign)'
    except Exception as e:
        info['mmcv ops'] = f'NOT loaded ({type(e).__name__}: {e}); rebuild mmcv with its ops'
    for name, module in [('mmengine', 'mmengine'), ('mmdet', 'mmdet'), ('mmseg', 'mmseg'),
                         ('numpy', 'numpy'), ('einops', 'einops'), ('mmhire', 'mmhire'),
                         # the deploy extra
                         ('onnx', 'onnx'), ('onnxruntime', 'onnxruntime'),
                         ('onnxscript', 'onnxscript'), ('mmdeploy', 'mmdeploy')]:
        info[name] = _version(module)
    return info


def main():
    for key, value in collect_env().items():
        print(f'{key}: {value}')


if __name__ == '__main__':
    main()
