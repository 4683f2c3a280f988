"""What ``--amp`` changes in a config, for tools/train.py and tools/test.py."""
import torch

from mmhire.errors import PreflightError

# optim wrappers that --amp may replace: plain fp32 training and the AMP wrappers themselves
REPLACEABLE = ('OptimWrapper', 'AmpOptimWrapper', 'AutocastOptimWrapper')


def _on_gpu() -> bool:
    return torch.cuda.is_available()


def _cpu_line(what: str) -> str:
    from mmhire.engine import cpu_bf16_note
    return cpu_bf16_note() or f'--amp: {what} in bf16 autocast on this CPU; heads in float32'


def check_optim_wrapper(cfg) -> None:
    """mmengine's ``AmpOptimWrapper`` asserts a GPU; say so, with the fix, before the Runner
    dies with an AssertionError."""
    if cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper' and not _on_gpu():
        raise PreflightError(
            "optim_wrapper type 'AmpOptimWrapper' trains on GPUs only (mmengine); on this CPU "
            "use type='AutocastOptimWrapper' (bf16 autocast, from mmhire), or tools/train.py "
            '--amp, which selects it')


def enable_amp_training(cfg) -> str:
    """Switch the config's optim wrapper to :class:`~mmhire.engine.AutocastOptimWrapper`;
    returns the line that says what that does here."""
    wrapper = cfg.get('optim_wrapper', {}).get('type', 'OptimWrapper')
    if wrapper not in REPLACEABLE:
        raise PreflightError(
            f"--amp replaces the optim wrapper, but this config uses {wrapper!r}, which --amp "
            f"cannot stand in for; drop --amp and set the wrapper's precision in the config")
    cfg.optim_wrapper.type = 'AutocastOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if _on_gpu():
        return '--amp: fp16 autocast with dynamic loss scaling (AmpOptimWrapper)'
    return _cpu_line('backbone and neck train')


def amp_inference_line(device: str) -> str:
    """The line that says what ``--amp`` does for inference on ``device``."""
    if device.startswith('cuda'):
        return '--amp: backbone and neck in fp16 autocast; heads in float32'
    return _cpu_line('backbone and neck run')


def enable_amp_testing(cfg) -> str:
    """Add :class:`~mmhire.engine.FeatureAutocastHook` (backbone and neck in fp16 on GPUs,
    bf16 on CPUs); returns the line that says what that does here."""
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='FeatureAutocastHook')]
    return amp_inference_line('cuda' if _on_gpu() else 'cpu')
