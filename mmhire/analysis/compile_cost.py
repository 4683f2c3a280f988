"""Where the first ``torch.compile`` call of a HireMLP spends its time, for
``tools/benchmark_compile.py``.

On a CPU, inductor turns every fused group of operators into a C++ kernel and builds each
distinct one with gcc into its own shared library. The kernels' sizes are constants, so every
stage and shift of a HireMLP has its own. A cold compile therefore costs roughly: dynamo's
tracing, AOT autograd and the graph passes, lowering and code generation in Python (once per
block, or once per distinct block inside a nested compile region), and one gcc build per
distinct kernel, spread over ``torch._inductor.config.compile_threads`` worker processes.

:func:`measure_compile` compiles in a fresh process with an empty kernel cache and the graph
caches off (what a user's first run on a new machine sees), then rebuilds a sample of the
kernels it made, one at a time, with inductor's own build path (compiler flags and
precompiled header included), and an empty kernel: the floor that every kernel pays.
"""
import ast
import glob
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

# dynamo's own timers (``torch._dynamo.utils.compilation_time_metrics``), summed over graphs,
# under the names the table prints. The builds run in worker processes while code generation
# goes on; the wait is what is left of them after it.
PHASES = (('tracing', 'bytecode_tracing'),
          ('joint graph', 'aot_trace_joint_graph'),
          ('partition', 'min_cut_rematerialization_partition'),
          ('post-grad passes', '_recursive_post_grad_passes'),
          ('lowering', 'GraphLowering.run'),
          ('code generation', 'GraphLowering.codegen'),
          ('waiting for gcc', 'async_compile.wait'))

_KERNEL = re.compile(r"async_compile\.cpp_pybinding\((\[[^\]]*\]), r'''(.*?)'''\)", re.S)
EMPTY_KERNEL = ('#include <torch/csrc/inductor/cpp_prefix.h>\n'
                'extern "C" void kernel(float* out_ptr0) { out_ptr0[0] = 0.0f; }\n')


def kernel_sources(cache_dir):
    """``(argtypes, source)`` of every C++ kernel in the wrapper modules inductor wrote under
    ``cache_dir``, each distinct source once."""
    seen = {}
    for path in sorted(glob.glob(os.path.join(cache_dir, '**', '*.py'), recursive=True)):
        with open(path) as f:
            text = f.read()
        for argtypes, source in _KERNEL.findall(text):
            seen.setdefault(source, ast.literal_eval(argtypes))
    return [(argtypes, source) for source, argtypes in seen.items()]


def time_kernel_build(argtypes, source) -> float:
    """Seconds to build and load ``source`` as inductor builds a kernel (a comment makes it
    new to the cache, so gcc runs)."""
    from torch._inductor.codecache import CppPythonBindingsCodeCache
    start = time.perf_counter()
    CppPythonBindingsCodeCache.load_pybinding(argtypes, f'{source}\n// rebuild {uuid.uuid4()}\n')
    return time.perf_counter() - start


def rebuild_times(kernels, sample: int):
    """Build times of up to ``sample`` of ``kernels``, spread evenly over the list, and of
    the empty kernel (after one warm-up build, which may make the precompiled header)."""
    time_kernel_build(['float*'], EMPTY_KERNEL)
    step = max(1, len(kernels) // max(sample, 1))
    picked = kernels[::step][:sample]
    return ([time_kernel_build(argtypes, source) for argtypes, source in picked],
            time_kernel_build(['float*'], EMPTY_KERNEL))


def _phase_seconds():
    from torch._dynamo.utils import compilation_time_metrics
    return {name: round(sum(compilation_time_metrics.get(key, [])), 1) for name, key in PHASES}


def _child(spec):
    """Runs in the fresh process: compile, time the first call, then rebuild kernels."""
    import torch
    from mmhire.analysis.numeric import rel_error
    from mmhire.models.backbones.hire_mlp import HireMLP
    torch.set_num_threads(spec['threads'])
    torch.manual_seed(0)
    model = HireMLP(arch=spec['arch'], fast=True).train(spec['mode'] == 'train')
    x = torch.randn(spec['batch'], 3, *spec['shape'])
    net = torch.compile(model, fullgraph=True)
    start = time.perf_counter()
    if spec['mode'] == 'train':
        outs = net(x)
        sum(out.mean() for out in outs).backward()
    else:
        with torch.no_grad():
            outs = net(x)
    first_call = time.perf_counter() - start
    with torch.no_grad():  # the eager model's outputs (in training, batch statistics too)
        expected = model(x)
    errors = [rel_error(out, ref) for out, ref in zip(outs, expected)]
    error = math.nan if any(math.isnan(e) for e in errors) else max(errors)  # NaN: a failure
    kernels = kernel_sources(os.environ['TORCHINDUCTOR_CACHE_DIR'])
    times, empty = rebuild_times(kernels, spec['sample'])
    from torch._inductor import config
    return dict(first_call=round(first_call, 1), kernels=len(kernels), max_rel_error=error,
                compile_threads=config.compile_threads, phases=_phase_seconds(),
                kernel_build_median=round(statistics.median(times), 2) if times else None,
                kernel_build_sampled=len(times), empty_kernel_build=round(empty, 2))


def measure_compile(arch='s', shape=(800, 1216), mode='eval', batch=1, threads=2, sample=12):
    """Compile ``HireMLP(arch)`` on a ``batch x 3 x shape`` input in ``mode`` (``'eval'`` or
    ``'train'``: a forward and backward) in a fresh process with cold caches; returns the
    first call's seconds, the number of distinct kernels, the compiled outputs' largest
    relative difference from the eager model's, dynamo's phase times and the median rebuild
    time of ``sample`` kernels next to the empty kernel's."""
    if mode not in ('eval', 'train'):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    spec = dict(arch=arch, shape=list(shape), mode=mode, batch=batch, threads=threads,
                sample=sample)
    cache = tempfile.mkdtemp(prefix='mmhire_compile_cost_')  # ours alone; removed below
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TORCHINDUCTOR_FX_GRAPH_CACHE='0',
               TORCHINDUCTOR_AUTOGRAD_CACHE='0')
    try:
        proc = subprocess.run([sys.executable, '-m', 'mmhire.analysis.compile_cost',
                               json.dumps(spec)], env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f'compiling HireMLP-{arch} ({mode}) failed in the child process:\n'
                           f'{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == '__main__':
    import warnings
    warnings.filterwarnings('ignore')
    print(json.dumps(_child(json.loads(sys.argv[1]))))
