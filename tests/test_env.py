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


def test_every_exception_is_an_mmhire_error_defined_in_errors():
    """One family: a tool catches MMHireError and prints one line, whatever went wrong."""
    import inspect
    import pkgutil
    import importlib

    from mmhire import errors
    for info in pkgutil.walk_packages(mmhire.__path__, 'mmhire.'):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith('mmhire'):
                assert cls.__module__ == 'mmhire.errors', (info.name, cls)
                assert issubclass(cls, errors.MMHireError), cls


def test_cpu_description_names_the_vector_unit(monkeypatch):
    """The line the test run and the benchmarks start with: AVX-512 and AVX2 machines round
    (and run) differently, so every figure says which it came from."""
    from mmhire import env
    for flags, vector in [('fpu avx2 avx512f avx512_bf16', 'AVX-512 with bf16'),
                          ('fpu avx2 avx512f', 'AVX-512,'), ('fpu avx avx2', 'AVX2 (no AVX-512)'),
                          ('fpu sse4_2', 'no AVX2')]:
        monkeypatch.setattr(env, '_cpuinfo', lambda f=flags: ('Some CPU', set(f.split())))
        line = env.cpu_description()
        assert line.startswith('Some CPU, ') and vector in line and line.endswith(' cores'), line
    monkeypatch.setattr(env, '_cpuinfo', lambda: ('', set()))  # no /proc/cpuinfo
    assert 'vector unit unknown' in env.cpu_description()
