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


def _cpuinfo():
    """Model name and flags of the first processor in /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        with open('/proc/cpuinfo') as f:
            text = f.read()
    except OSError:
        return '', set()
    fields = dict(line.split(':', 1) for line in text.split('\n\n')[0].splitlines()
                  if ':' in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get('model name', ''), set(fields.get('flags', '').split())


def cpu_description() -> str:
    """One line naming the CPU, its widest vector unit and its cores, e.g. ``AMD EPYC, AVX2
    (no AVX-512), 2 cores``: float results near a tie, and every timing, depend on it."""
    name, flags = _cpuinfo()
    name = name or platform.processor() or platform.machine()
    if 'avx512f' in flags:
        vector = 'AVX-512' + (' with bf16' if 'avx512_bf16' in flags else '')
    elif 'avx2' in flags:
        vector = 'AVX2 (no AVX-512)'
    else:
        vector = 'no AVX2' if flags else 'vector unit unknown'
    return f'{name}, {vector}, {os.cpu_count()} cores'


def collect_env() -> dict:
    info = {
        'Python': sys.version.replace('\n', ' '),
        'Platform': platform.platform(),
        'CPU': cpu_description(),
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
