"""Mixed precision that also runs on CPUs: bf16 there, fp16 on GPUs.

On a CPU with native bf16 instructions (AVX512-BF16 or AMX), oneDNN can multiply bf16 matrices
much faster than float32 ones, and bf16 activations take half the memory; whether a model gets
faster depends on the CPU (``tools/benchmark.py --amp`` puts bf16 rows next to the float32
ones; measured figures in docs/speed.md). bf16 keeps float32's exponent range, so no
loss scaling is needed, but only 8 bits of mantissa: a box coordinate near 1000 px would land
on an 8 px grid, and mmdet builds its anchors in the dtype of the head outputs. So on CPUs
autocast covers the feature extractor, ``backbone`` and ``neck`` (where HireMLP models spend
their time), whose outputs come back as float32; heads, losses and box arithmetic stay float32
(:func:`feature_autocast`). On GPUs :class:`AutocastOptimWrapper` is mmengine's
``AmpOptimWrapper`` (fp16 autocast over the model, dynamic loss scaling).
"""
import contextlib
import logging
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmhire.errors import AmpError
from mmhire.registry import HOOKS, OPTIM_WRAPPERS

FEATURE_MODULES = ('backbone', 'neck')


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX). Without them
    oneDNN emulates bf16, which is slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes
        return False


def cpu_bf16_note() -> Optional[str]:
    """One line saying what ``--amp`` does on this CPU when it cannot use bf16; else None."""
    if cpu_supports_bf16():
        return None
    return ('--amp: this CPU has no native bf16 instructions (AVX512-BF16 or AMX), where bf16 '
            'would be slower than float32; running in float32 instead')


def _to_float32(value):
    if torch.is_tensor(value):
        return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float32(v) for k, v in value.items()}
    return value


def _autocast_hooks(module, device_type, dtype):
    """Forward hooks that run ``module`` under autocast and hand its outputs on as float32."""
    active = []  # a stack: entered in the pre-hook, left in the (always called) post-hook

    def enter(mod, args):
        context = torch.autocast(device_type, dtype=dtype)
        context.__enter__()
        active.append(context)

    def leave(mod, args, output):
        active.pop().__exit__(None, None, None)
        return _to_float32(output)

    return [module.register_forward_pre_hook(enter),
            module.register_forward_hook(leave, always_call=True)]


@contextlib.contextmanager
def feature_autocast(model: torch.nn.Module, device_type: str = 'cpu',
                     dtype: torch.dtype = torch.bfloat16):
    """Within the block, ``model.backbone`` and ``model.neck`` (those it has) run under
    autocast and return float32; the rest of the model runs as it is. ``model`` may be wrapped
    (``model.module``, as DDP does)."""
    model = getattr(model, 'module', model)
    modules = [getattr(model, name) for name in FEATURE_MODULES
               if isinstance(getattr(model, name, None), torch.nn.Module)]
    if not modules:
        raise AmpError(f'{type(model).__name__} has no backbone or neck to run in {dtype}; '
                       f'--amp on CPU needs an MMDetection / MMSegmentation model')
    handles = [h for module in modules for h in _autocast_hooks(module, device_type, dtype)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def inference_autocast(model: torch.nn.Module):
    """:func:`feature_autocast` in the precision of the model's device (bf16 on a CPU with
    native bf16, fp16 on CUDA), or a no-op on a CPU without bf16."""
    device = next(model.parameters()).device
    if device.type == 'cuda':
        return feature_autocast(model, 'cuda', torch.float16)
    if device.type == 'cpu' and cpu_supports_bf16():
        return feature_autocast(model, 'cpu', torch.bfloat16)
    return contextlib.nullcontext()


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` that also trains on CPUs.

    On a GPU (or NPU / MLU / MUSA) it is mmengine's ``AmpOptimWrapper``, unchanged: fp16 (or
    ``dtype``) autocast over the model and a loss scaler. On a CPU it runs the backbone and neck
    in bf16 (:func:`feature_autocast`) with float32 master weights and no loss scaler (bf16 has
    float32's range); on a CPU without native bf16 it trains in float32 and logs one line
    saying so. ``tools/train.py --amp`` selects it; configs can ask for it with
    ``optim_wrapper = dict(type='AutocastOptimWrapper', optimizer=...)``.

    Args:
        loss_scale (str | float | dict): The GPU loss scaler, as for ``AmpOptimWrapper``;
            unused on CPUs.
        dtype (str | torch.dtype, optional): The GPU autocast dtype. On CPUs only ``None`` or
            ``'bfloat16'`` (CPU autocast has no fp16).
        use_fsdp (bool): As for ``AmpOptimWrapper`` (GPU only).
        **kwargs: ``OptimWrapper``'s arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs):
        from mmengine.device import get_device
        self.on_cpu = get_device() == 'cpu'
        if not self.on_cpu:
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise AmpError(f'AutocastOptimWrapper got dtype={dtype!r}, but autocast on a CPU '
                           f"runs in bfloat16 only: leave dtype out or set dtype='bfloat16'")
        OptimWrapper.__init__(self, **kwargs)
        self.loss_scaler = None
        self._scale_update_param = None
        self.cast_dtype = torch.bfloat16 if cpu_supports_bf16() else None
        if self.cast_dtype is None:
            print_log(f'AutocastOptimWrapper: {cpu_bf16_note()}', logger='current',
                      level=logging.WARNING)

    def backward(self, loss, **kwargs):
        if self.on_cpu:
            return OptimWrapper.backward(self, loss, **kwargs)
        return super().backward(loss, **kwargs)

    def step(self, **kwargs):
        if self.on_cpu:
            return OptimWrapper.step(self, **kwargs)
        return super().step(**kwargs)

    def state_dict(self) -> dict:
        if self.on_cpu:
            return OptimWrapper.state_dict(self)
        return super().state_dict()

    def load_state_dict(self, state_dict: dict):
        if self.on_cpu:  # a checkpoint from a GPU run carries its scaler: not needed here
            state_dict = {k: v for k, v in state_dict.items() if k != 'loss_scaler'}
            return OptimWrapper.load_state_dict(self, state_dict)
        return super().load_state_dict(state_dict)

    @contextlib.contextmanager
    def optim_context(self, model):
        if not self.on_cpu:
            with super().optim_context(model):
                yield
            return
        features = (feature_autocast(model, 'cpu', self.cast_dtype) if self.cast_dtype
                    else contextlib.nullcontext())
        with OptimWrapper.optim_context(self, model), features:
            yield


@HOOKS.register_module()
class FeatureAutocastHook(Hook):
    """Validation and testing with the backbone and neck in low precision
    (:func:`inference_autocast`: bf16 on CPUs with native bf16, fp16 on GPUs); the heads and
    post-processing stay float32. ``tools/test.py --amp`` adds it."""

    priority = 'VERY_LOW'

    def __init__(self):
        self._stack = contextlib.ExitStack()

    def _enter(self, runner):
        self._stack.close()
        self._stack.enter_context(inference_autocast(runner.model))

    def _leave(self, runner, *args, **kwargs):
        self._stack.close()

    before_val_epoch = before_test_epoch = _enter
    after_val_epoch = after_test_epoch = _leave
