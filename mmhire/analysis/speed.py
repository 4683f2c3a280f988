"""Timing backbones, one model per fresh process, for ``tools/benchmark*.py``.

Each (model, mode) runs in a fresh process (forked from a server that has imported the
libraries and nothing else), so on CPU "peak memory" is that process's peak
resident memory above what it held once the model was built; on CUDA it is
``torch.cuda.max_memory_allocated``. Compare ratios within one run: these machines are shared.
"""
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import NamedTuple, Tuple

MODELS = ('hire_s_fast', 'hire_s_fused', 'hire_s_plain', 'resnet50', 'swin_t', 'pvtv2_b2')
COMPILED = '+compile'  # suffix: the same backbone under torch.compile
COMPILE_MODELS = ('hire_s_fast', 'hire_s_fast' + COMPILED, 'resnet50', 'resnet50' + COMPILED)
ORT = '+onnxruntime'  # suffix: the backbone exported to ONNX (TorchScript exporter), in onnxruntime
ORT_MODELS = ('hire_s_fast', 'hire_s_fast' + ORT, 'hire_s_fused', 'hire_s_fused' + ORT,
              'resnet50', 'resnet50' + ORT, 'swin_t', 'swin_t' + ORT)
INFERENCE_ONLY = ('hire_s_fused',)  # fused BatchNorms: no training step
LABELS = {'hire_s_fast': 'HireMLP-S (fast)', 'hire_s_plain': 'HireMLP-S (plain)',
          'hire_s_fused': 'HireMLP-S (fast, fused)',
          'resnet50': 'ResNet-50', 'swin_t': 'Swin-T', 'pvtv2_b2': 'PVTv2-b2',
          'hire_s_fast' + COMPILED: 'HireMLP-S (torch.compile)',
          'resnet50' + COMPILED: 'ResNet-50 (torch.compile)'}
LABELS.update({m + ORT: LABELS[m] + ' onnxruntime' for m in ORT_MODELS if not m.endswith(ORT)})

# glibc's malloc, told to keep freed memory for reuse instead of handing it back to the OS. By
# default every buffer above 32 MB is a fresh mmap and frees trim the heap, so a training step
# at 800x1216 page-faults in up to ~1.5 GB of new memory (measured: 90k-400k minor faults and
# 0.3-2 s of system time per step, varying from step to step); that cost depends on the order
# of allocations more than on the model, and makes repeated runs differ by 20% or more. With
# these two settings the faults are gone and what is left is the models' own work. They are
# read when a process starts (mallopt() at run time, measured, leaves most faults in place),
# so they go into the environment of the worker processes. M_TOP_PAD brings faults back.
RETAIN_ENV = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2**30)}


class Job(NamedTuple):
    """One measurement: ``model`` (a name of :data:`LABELS`) in ``mode`` (``'infer'`` or
    ``'train'``) at ``shape`` (H, W); ``amp``: autocast (bf16 on CPU, fp16 on CUDA)."""
    model: str
    mode: str
    shape: Tuple[int, int]
    batch: int = 1
    threads: int = 2
    warmup: int = 2
    repeats: int = 5
    device: str = 'cpu'
    amp: bool = False


def amp_dtype_name(device: str) -> str:
    return 'fp16' if device.startswith('cuda') else 'bf16'


def label(job_or_model, amp=False, device='cpu') -> str:
    """The row label: the model's, with the autocast precision when ``amp``."""
    name = job_or_model.model if isinstance(job_or_model, Job) else job_or_model
    if isinstance(job_or_model, Job):
        amp, device = job_or_model.amp, job_or_model.device
    return LABELS[name] + (f' {amp_dtype_name(device)}' if amp else '')


def build(name):
    """The backbone, as MMDetection builds it for its detectors (random init, no download)."""
    name = name.removesuffix(COMPILED).removesuffix(ORT)
    if name.startswith('hire'):
        from mmhire import HireMLP
        model = HireMLP(arch=name.split('_')[1], fast=not name.endswith('plain'))
        return model.fuse() if name.endswith('fused') else model
    from mmdet.models.backbones import (PyramidVisionTransformerV2, ResNet,
                                        SwinTransformer)
    if name == 'resnet50':
        return ResNet(depth=50, out_indices=(0, 1, 2, 3))
    if name == 'swin_t':
        return SwinTransformer(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                               window_size=7, out_indices=(0, 1, 2, 3))
    if name == 'pvtv2_b2':
        return PyramidVisionTransformerV2(embed_dims=64, num_layers=[3, 4, 6, 3])
    raise ValueError(f'unknown model {name!r}; choose from {MODELS}')


def peak_rss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def onnxruntime_step(model, x, threads):
    """Export ``model`` as mmdeploy does (TorchScript exporter, dynamic sizes) and return
    ``(step, export_seconds)``, ``step`` running the file in an onnxruntime CPU session with
    ``threads`` intra-op threads."""
    import tempfile

    import onnxruntime as ort

    from mmhire.deploy.onnx_export import export_onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'model.onnx')
        start = time.perf_counter()
        export_onnx(model, x, path)
        seconds = time.perf_counter() - start
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feed = {'input': x.numpy()}
    return (lambda: session.run(None, feed)), seconds


def measure(job: Job) -> dict:
    """Runs in its own process: time one model in one mode; returns a dict."""
    import torch
    torch.set_num_threads(job.threads)
    torch.manual_seed(0)
    model = build(job.model).to(job.device)
    if job.model.endswith(ORT):
        model.eval()
        x = torch.randn(job.batch, 3, *job.shape)
        run, export_seconds = onnxruntime_step(model, x, job.threads)
        del model
        base = current_rss_mb()
        times = []
        for i in range(job.warmup + job.repeats):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        return dict(job=job, median=statistics.median(times[job.warmup:]),
                    peak_mb=max(peak_rss_mb() - base, 0.0), first_call=export_seconds)
    x = torch.randn(job.batch, 3, *job.shape, device=job.device)
    cuda = job.device.startswith('cuda')
    model.train(job.mode == 'train')
    if not cuda:
        # RSS can only grow as far as its peak: force a fresh high-water mark after building
        base = current_rss_mb()
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20

    net = model
    if job.model.endswith(COMPILED):  # HireMLP must compile as one graph; ResNet may not
        net = torch.compile(model, fullgraph=job.model.startswith('hire'))

    def step():
        with torch.autocast(device_type='cuda' if cuda else 'cpu', enabled=job.amp,
                            dtype=torch.float16 if cuda else torch.bfloat16):
            if job.mode == 'infer':
                with torch.no_grad():
                    net(x)
            else:
                outs = net(x)
                sum(o.float().mean() for o in outs).backward()
                model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    times = []
    for i in range(job.warmup + job.repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()) - base
    # the first call of a compiled model compiles it (and runs once)
    return dict(job=job, median=statistics.median(times[job.warmup:]),
                peak_mb=max(peak, 0.0), first_call=times[0])


def complexity(name, shape):
    """Params and MACs of a benchmark backbone at ``shape``."""
    import torch

    from .complexity import count_macs
    model = build(name)
    model.eval()  # (mmdet's ResNet.train() returns None, so no chaining)
    macs = count_macs(model, (torch.randn(1, 3, *shape),))
    return sum(p.numel() for p in model.parameters()), macs


def matmul_rate(threads, device, n=2048, repeats=10):
    """This machine's float32 matrix-multiply rate (FLOP/s, median of ``repeats``)."""
    import torch
    torch.set_num_threads(threads)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        a @ b
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


# Imported once by the fork server, so a job's process starts in milliseconds instead of
# importing torch and MMDetection again (about 7 s on 2 cores, per job)
PRELOAD = ['__main__', 'torch', 'mmdet.models', 'mmhire', 'mmhire.analysis.speed']
_server_allocator = []  # the allocator the fork server of this process was started with


def _job_context(allocator):
    """A fresh process per job: forked from a fork server that has only imported
    :data:`PRELOAD` (no model built, no tensor made, no thread started). The server reads the
    allocator settings when it starts and passes them on; a later call with the other
    allocator (one process, two settings) spawns its workers instead."""
    if _server_allocator and _server_allocator[0] != allocator:
        return mp.get_context('spawn')
    _server_allocator[:] = [allocator]
    ctx = mp.get_context('forkserver')
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@contextlib.contextmanager
def _allocator_env(allocator):
    """With ``allocator='retain'``, :data:`RETAIN_ENV` set while the block runs (read by the
    workers, or their fork server, as they start); the environment restored after."""
    saved = {k: os.environ.get(k) for k in RETAIN_ENV}
    if allocator == 'retain':
        os.environ.update(RETAIN_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_jobs(jobs, rounds=1, allocator='system'):
    """Run every job ``rounds`` times, round-robin (so slow spells of a shared machine hit all
    models alike), each in a fresh process; a job's result is the median over its rounds of its
    per-process medians. ``allocator='retain'``: the workers start with :data:`RETAIN_ENV`.
    Progress goes to stderr."""
    per_job = [[] for _ in jobs]
    with _allocator_env(allocator):
        ctx = _job_context(allocator)
        for r in range(rounds):
            for i, job in enumerate(jobs):  # one at a time: they would compete for the cores
                with ctx.Pool(1) as pool:
                    res = pool.apply(measure, (job,))
                per_job[i].append(res)
                tag = f' (round {r + 1}/{rounds})' if rounds > 1 else ''
                print(f"  {label(job):23s} {job.mode:5s} {job.shape[0]}x{job.shape[1]}: "
                      f"{res['median'] * 1e3:8.1f} ms, peak {res['peak_mb']:7.0f} MB{tag}",
                      file=sys.stderr, flush=True)
    return [dict(runs[0], median=statistics.median(r['median'] for r in runs),
                 peak_mb=statistics.median(r['peak_mb'] for r in runs)) for runs in per_job]


def iter_jobs(jobs, allocator='system'):
    """Run each job once, in order, each in a fresh process as :func:`run_jobs` does, and
    yield ``(job, result, error)`` as each one finishes: ``result`` is :func:`measure`'s dict
    and ``error`` None, or ``result`` is None and ``error`` one line saying why the job failed
    (it raised, or its process died). A failed job does not stop the ones after it. The
    allocator environment stays set until the generator is exhausted or closed (the fork
    server reads it when it starts). Used by ``tools/gpu_check.py`` to print rows as they
    come."""
    from concurrent.futures import ProcessPoolExecutor
    with _allocator_env(allocator):
        ctx = _job_context(allocator)
        for job in jobs:
            try:
                # (an executor, not a Pool: a worker that dies raises BrokenProcessPool here,
                # where Pool.apply would wait for it forever)
                with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                    result = pool.submit(measure, job).result()
            except Exception as e:  # noqa: BLE001 (reported, and the next job runs)
                first = (str(e).strip().splitlines() or [''])[0][:300]
                yield job, None, f'{type(e).__name__}: {first}'.rstrip(': ')
            else:
                yield job, result, None


def add_timing_args(parser):
    """The options every benchmark script shares."""
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cpu')


def add_run_args(parser):
    """Options of the scripts that run each model in fresh processes."""
    parser.add_argument('--rounds', type=int, default=1,
                        help='run every model this many times, round-robin, and take medians')
    parser.add_argument('--allocator', choices=('system', 'retain'), default='system',
                        help="'retain': glibc keeps freed memory (no page-fault noise), see "
                        'mmhire.analysis.speed.RETAIN_ENV')
    parser.add_argument('--png', help='save a chart here')


def check_args(parser, args):
    """Reject what would fail deep inside a worker process, with the fix."""
    if getattr(args, 'rounds', 1) < 1:
        parser.error('--rounds must be at least 1')
    if args.batch < 1 or args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error('--batch, --threads and --repeats must be at least 1, --warmup at least 0')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error('--device cuda but no CUDA GPU is visible; leave --device out (cpu)')


def rounds_note(args):
    return f', median over {args.rounds} round-robin rounds' if args.rounds > 1 else ''
