"""The prepared GPU check: HireMLP's formulations on CUDA, then a benchmark, in a bounded time.

    python tools/gpu_check.py                 # on one GPU (H100 defaults), at most 300 s
    python tools/gpu_check.py --no-benchmark  # the checks only
    python tools/gpu_check.py --device cpu --no-compile --size 64 96 --warmup 0 --repeats 1 \
        --threads 1 --time-limit 1500         # a dry run on the CPU (6-7 minutes on 2 cores)

The Hire module has two formulations: the plain one (the released formulation, the test
oracle: ``HireModule(..., fast=False)``, ``module._forward_plain(x)``) and the fast one
(``fast=True``, the default), which eager runs, ``torch.compile`` and export all run. Steps, in
this order (``--skip`` takes their names):

1. ``module``: one Hire module per pad mode (circular, constant, replicate) and (region size,
   shift) in (1, 0), (2, 1), (3, 2), (4, 2), (4, 3), training mode, random BatchNorm statistics,
   maps 70x90, 7x5 and 2x9 at batch 1 and 2: ``module(x)`` (fast) and
   ``module._forward_plain(x)`` (plain), outputs and input gradients against a float64 plain
   run, to 1e-4 (relative to the reference's largest magnitude);
2. ``backbone``: a small HireMLP (depths 1-2-2-1, widths 16-64), random BatchNorm statistics,
   2x3x197x263 and 1x3x197x263: fast and plain training step (outputs, input gradient) and fused
   inference against float64, to 1e-4;
3. ``fp16``: under ``torch.autocast(device, dtype=torch.float16)``, eval mode, against float32:
   the small HireMLP on unit-scale inputs (to 2e-2 of float64), and the first Hire module of
   HireMLP-T (``HireModule(64, 4, 2)``, circular) with random BatchNorm statistics on large
   activations (inputs of mean 5) at 200x304 and 256x512, default path and after ``fuse()``
   (and the plain path at 200x304, for contrast): every output finite and within 1e-2 of the
   float32 plain path;
4. ``fp16-backbone``: HireMLP-S, random BatchNorm statistics, 1x3x1024x2048 under fp16
   autocast, default and fused: every output finite and within 1e-2 of float32 (the CPU dry
   run uses 1x3x256x512 and says so; ``--fp16-backbone-size``);
5. ``compile-module``: ``torch.compile(module, fullgraph=True, dynamic=False)`` of one Hire
   module per pad mode, training mode, four compiles: circular (region 4, shift 2) at 1x32x70x90
   and 2x32x70x90, constant (3, 2) at 2x32x70x90, replicate (2, 1) at 1x32x7x5: outputs and
   input gradients against a float64 plain run, to 1e-4;
6. ``compile-backbone``: the small HireMLP under ``torch.compile(fullgraph=True)``: inference
   and a training step against float64, to 1e-4;
7. ``benchmark``: each backbone of ``--models`` (eager rows first, then its ``+compile``
   variant), batch 1 and 2 (``--batches``), float32 and autocast (fp16 on CUDA, bf16 on the
   CPU), inference and training step, one fresh process per row
   (:func:`mmhire.analysis.speed.iter_jobs`); each row is printed as soon as it is measured.

A non-finite error is a failure. The time limit (``--time-limit``, default 300 s) counts from
the start of the process, imports included: a step starts only if time is left, a running step
is interrupted at the deadline (the limit less min(10 s, limit / 20), kept for stopping the
benchmark and printing the summary; a watchdog ends the process at the limit if a step cannot
be interrupted). The benchmark gets whatever time is left; it runs in a process of its own in
a process group of its own (with its fork server and the one process per row), which is
killed as a whole (SIGTERM, then SIGKILL) when time is up, and which dies with this script
if that is killed. Whatever did not run is listed at the end.

Options: ``--device`` (cuda), ``--time-limit`` (300), ``--skip STEP ...``, ``--no-compile``
(no steps 5 and 6, no compiled rows), ``--no-benchmark``, ``--fp16-backbone-size H W``; for the
benchmark ``--size H W`` (800 1216), ``--models`` (hire_s_fast resnet50; any eager model of
``tools/benchmark.py``), ``--batches`` (1 2), ``--no-amp``, ``--no-train``,
``--compile-train`` (compiled training-step rows too: each a cold compile), ``--warmup`` (3),
``--repeats`` (10), ``--threads`` (2), ``--allocator``. The default benchmark is 16 eager rows
(2 models x batch 1, 2 x float32, fp16 x inference, training step) and 8 compiled inference
rows, in that order.

Exit status: 0 when every step ran and passed; 1 when a check failed, a step crashed or a
benchmark row failed or was killed; 3 when nothing failed but the time limit left something
out. With ``--device cuda`` (the default) on a machine without a visible CUDA device it prints
one line and exits 0 (nothing was checked).
"""
import time

T0 = time.monotonic()  # the time limit counts from here

import argparse  # noqa: E402
import copy  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TINY = dict(depths=[1, 2, 2, 1], embed_dims=[16, 32, 48, 64])
PAD_MODES = ('circular', 'constant', 'replicate')
REGION_SHIFTS = ((1, 0), (2, 1), (3, 2), (4, 2), (4, 3))
# 70x90 is big enough for any size rule a fast formulation may have (the current one needs
# > C (p + 1) positions); 2x9 pads the height beyond the map. (No 1x1 map in training mode:
# BatchNorm over two values per channel makes every path's float32 gradient noisy.)
MODULE_SIZES = ((70, 90), (7, 5), (2, 9))
BATCHES = (1, 2)
# torch.compile with static sizes: (pad mode, region size, shift), then (batch, H, W) each
# compiled once; every pad mode, batch 1 and 2, a map smaller than a region
COMPILED_CASES = ((('circular', 4, 2), ((1, 70, 90), (2, 70, 90))),
                  (('constant', 3, 2), ((2, 70, 90),)),
                  (('replicate', 2, 1), ((1, 7, 5),)))
# the first Hire module of HireMLP-T (and -S) and its stage-1 maps at 800x1216 and 1024x2048
LARGE_MODULE = dict(embed_dims=64, region_size=4, shift=2, pad_mode='circular')
LARGE_MEAN = 5.0
LARGE_SIZES = ((200, 304), (256, 512))
FP16_TOL = 1e-2
STEPS = ('module', 'backbone', 'fp16', 'fp16-backbone', 'compile-module', 'compile-backbone',
         'benchmark')
COMPILE_STEPS = ('compile-module', 'compile-backbone')
RESULT = '@gpu_check-row '  # prefix of the benchmark process's result lines


class TimeLimit(Exception):
    """Raised in the main thread when the time limit is reached during a step."""


def severity(error):
    """An error as a sort key: a non-finite error is worse than any finite one."""
    return error if math.isfinite(error) else math.inf


def worst(errors):
    """The largest error, the first non-finite one if any (Python's ``max`` drops a NaN that
    is not first); NaN for no errors."""
    return max(errors, key=severity, default=math.nan)


def nonfinite_note(outs):
    """'' or ', N% of the outputs non-finite'."""
    outs = [o.detach() for o in outs]
    bad = sum(int((~torch.isfinite(o)).sum()) for o in outs)
    total = sum(o.numel() for o in outs)
    return f', {bad / total:.1%} of the outputs non-finite' if bad else ''


class Report:
    def __init__(self):
        self.failed = []    # names of failed checks and crashed steps
        self.not_run = []   # steps and benchmark rows the time limit left out
        self.stopped = []   # what the time limit interrupted
        self.passed = 0
        self.benchmarked = False  # whether the benchmark ran to its end

    def check(self, name, error, tol, note=''):
        ok = math.isfinite(error) and error <= tol
        print(f'  {"ok  " if ok else "FAIL"} {name}: {error:.2e} (tolerance {tol:.0e}){note}',
              flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
        return ok


class Clock:
    """The time limit. Work stops at :attr:`deadline`, a few seconds before the limit, to
    leave time for stopping the benchmark and printing the summary; a watchdog ends the
    process at the limit itself if a step cannot be interrupted (:func:`start_watchdog`)."""

    def __init__(self, limit, start=T0):
        self.limit = limit
        self.end = start + limit
        self.deadline = self.end - min(10.0, limit / 20)

    def left(self):
        """Seconds to the deadline. Once it has passed, the main thread, which asked, is
        wrapping up: the watchdog gives it 10 s more."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            _finishing.set()
        return left


_benchmark_group = []  # the pid (= process group) of a running benchmark process
_finishing = threading.Event()  # set once the main thread is wrapping up after the deadline


def group_members(pgid):
    """Live (not zombie) processes of process group ``pgid``, as ``[(pid, state)]``, read
    from /proc."""
    members = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in 'ZX':
            members.append((int(name), fields[0]))
    return members


def kill_group(pgid, proc=None, grace=3.0):
    """SIGTERM to process group ``pgid``, then SIGKILL to whatever is left after ``grace``
    seconds; reaps ``proc`` (the group's leader, a child of this process). Returns the live
    members left (empty when the group is gone)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        until = time.monotonic() + wait
        while time.monotonic() < until:
            if proc is not None:
                proc.poll()
            if (proc is None or proc.returncode is not None) and not group_members(pgid):
                return []
            time.sleep(0.05)
    if proc is not None:
        proc.poll()
    return group_members(pgid)


def loss(outs, projections):
    return sum((o * w.to(o.dtype)).sum() for o, w in zip(outs, projections))


def module_checks(report, args):
    """Step 1: every pad mode and (region size, shift), eager fast and plain paths."""
    from mmhire.analysis.numeric import draw_away_from_kinks, randomize_norms, rel_error
    from mmhire.models.layers import HireModule
    device = args.device
    torch.manual_seed(0)
    worst_of = {}
    for pad_mode, (p, shift) in itertools.product(PAD_MODES, REGION_SHIFTS):
        ref = randomize_norms(HireModule(32, p, shift, pad_mode, fast=False)).to(device).train()
        module = HireModule(32, p, shift, pad_mode).to(device).train()
        module.load_state_dict(ref.state_dict())
        ref = ref.double()
        for batch, size in itertools.product(BATCHES, MODULE_SIZES):
            # float32 values, so that x64 holds exactly the float32 input
            x64, = draw_away_from_kinks(
                ref, lambda: (torch.randn(batch, 32, *size, device=device).float().double(),))
            x, weight = x64.float(), torch.randn(batch, 32, *size, device=device)
            x64.requires_grad_()
            expected = ref(x64)
            (expected * weight.double()).sum().backward()
            for path, run in (('fast', module), ('plain', module._forward_plain)):
                xi = x.clone().requires_grad_()
                out = run(xi)
                (out * weight).sum().backward()
                error = worst([rel_error(out, expected), rel_error(xi.grad, x64.grad)])
                where = f'{pad_mode}, region {p}, shift {shift}, {batch}x32x{size[0]}x{size[1]}'
                if path not in worst_of or severity(error) > severity(worst_of[path][0]):
                    worst_of[path] = (error, where)
            ref.zero_grad()
    for path in ('fast', 'plain'):
        error, where = worst_of[path]
        report.check(f'{path} path, outputs and input gradients (worst: {where})', error, 1e-4)


def small_backbones(device, fast=True):
    """A small HireMLP with random BatchNorm statistics (float32, and its float64 plain twin)."""
    from mmhire import HireMLP
    from mmhire.analysis.numeric import randomize_norms
    torch.manual_seed(0)
    model = randomize_norms(HireMLP(arch=TINY, fast=fast)).to(device)
    ref64 = HireMLP(arch=TINY, fast=False).to(device).double()
    ref64.load_state_dict(model.state_dict())
    return model, ref64


def backbone_checks(report, args):
    """Step 2: the small HireMLP, fast and plain training step, fused inference."""
    from mmhire import HireMLP
    from mmhire.analysis.numeric import draw_away_from_kinks, rel_error
    device = args.device
    plain, ref64 = small_backbones(device, fast=False)
    fast = HireMLP(arch=TINY).to(device)
    fast.load_state_dict(plain.state_dict())
    for batch in (2, 1):
        x64, = draw_away_from_kinks(
            ref64.train(),
            lambda: (torch.randn(batch, 3, 197, 263, device=device).float().double(),))
        x = x64.float()
        x64.requires_grad_()
        expected = ref64.train()(x64)
        # a random projection of each output as the loss: sum(o * o) would be almost constant
        # behind the output norms, and its input gradient a difference of large terms, 3e-3
        # off in float32 on every path
        projections = [torch.randn_like(o) for o in expected]
        loss(expected, projections).backward()
        for name, model in (('fast', fast), ('plain', plain)):
            xi = x.clone().requires_grad_()
            outs = model.train()(xi)
            loss(outs, projections).backward()
            model.zero_grad()
            error = worst([rel_error(o, e) for o, e in zip(outs, expected)]
                          + [rel_error(xi.grad, x64.grad)])
            report.check(f'{name}, training step at batch {batch}, outputs and input gradient',
                         error, 1e-4)
        ref64.zero_grad()
        with torch.no_grad():
            expected = ref64.eval()(x64.detach())
            fused = HireMLP(arch=TINY).to(device)
            fused.load_state_dict(plain.state_dict())
            outs = fused.eval().fuse()(x)
            report.check(f'fused, inference at batch {batch}',
                         worst(rel_error(o, e) for o, e in zip(outs, expected)), 1e-4)


def autocast(device):
    return torch.autocast(torch.device(device).type, dtype=torch.float16)


@torch.no_grad()
def fp16_checks(report, args):
    """Step 3: fp16 autocast, unit-scale and large activations."""
    from mmhire.analysis.numeric import randomize_norms, rel_error
    from mmhire.models.layers import HireModule
    device = args.device
    fast, ref64 = small_backbones(device)
    x = torch.randn(2, 3, 197, 263, device=device)
    expected = ref64.eval()(x.double())
    with autocast(device):
        outs = fast.eval()(x)
    report.check('small HireMLP, default path, unit-scale inputs, fp16 autocast vs float64',
                 worst(rel_error(o, e) for o, e in zip(outs, expected)), 2e-2,
                 nonfinite_note(outs))
    # The first Hire module of HireMLP-T/S sees activations far from unit scale: mean 5 here
    torch.manual_seed(0)
    module = randomize_norms(HireModule(**LARGE_MODULE)).to(device).eval()
    fused = copy.deepcopy(module)
    fused.fuse()
    name = ('HireModule({embed_dims}, {region_size}, {shift}), {pad_mode}'
            .format(**LARGE_MODULE))
    for h, w in LARGE_SIZES:
        x = LARGE_MEAN + torch.randn(1, LARGE_MODULE['embed_dims'], h, w, device=device)
        expected = module._forward_plain(x)
        paths = [('default path', module), ('default path after fuse()', fused)]
        if (h, w) == LARGE_SIZES[0]:  # the contrast (once: 30 s at 256x512 on a CPU)
            paths.insert(1, ('plain path', module._forward_plain))
        for path, run in paths:
            with autocast(device):
                out = run(x)
            report.check(f'{name}, inputs of mean {LARGE_MEAN:g}, 1x{h}x{w}, {path}, fp16 '
                         'autocast vs float32', rel_error(out, expected), FP16_TOL,
                         nonfinite_note([out]))


@torch.no_grad()
def fp16_backbone_checks(report, args):
    """Step 4: HireMLP-S at 1024x2048 under fp16 autocast."""
    from mmhire import HireMLP
    from mmhire.analysis.numeric import randomize_norms, rel_error
    device = args.device
    h, w = args.fp16_backbone_size
    torch.manual_seed(0)
    model = randomize_norms(HireMLP(arch='s')).to(device).eval()
    x = torch.randn(1, 3, h, w, device=device)
    expected = model(x)
    fused = copy.deepcopy(model).fuse()
    for path, run in (('default path', model), ('fused', fused)):
        with autocast(device):
            outs = run(x)
        report.check(f'HireMLP-S at 1x3x{h}x{w}, {path}, fp16 autocast vs float32',
                     worst(rel_error(o, e) for o, e in zip(outs, expected)), FP16_TOL,
                     nonfinite_note(outs))
        del outs


def strict_compile(module):
    """``torch.compile(fullgraph=True)`` with static sizes that errors out instead of falling
    back to eager when it would recompile too often."""
    import torch._dynamo
    torch._dynamo.reset()
    config = torch._dynamo.config
    for key, value in (('recompile_limit', 64), ('cache_size_limit', 64),
                       ('fail_on_recompile_limit_hit', True)):
        if hasattr(config, key):
            setattr(config, key, value)
    return torch.compile(module, fullgraph=True, dynamic=False)


def compile_module_checks(report, args):
    """Step 5: one compiled Hire module per pad mode, batch 1 and 2, outputs and gradients."""
    from mmhire.analysis.numeric import draw_away_from_kinks, randomize_norms, rel_error
    from mmhire.models.layers import HireModule
    device = args.device
    torch.manual_seed(0)
    errors = []
    start = time.perf_counter()
    for (pad_mode, p, shift), shapes in COMPILED_CASES:
        ref = randomize_norms(HireModule(32, p, shift, pad_mode, fast=False)).to(device).train()
        module = HireModule(32, p, shift, pad_mode).to(device).train()
        module.load_state_dict(ref.state_dict())
        ref = ref.double()
        compiled = strict_compile(module)
        for batch, h, w in shapes:
            x64, = draw_away_from_kinks(
                ref, lambda: (torch.randn(batch, 32, h, w, device=device).float().double(),))
            x, weight = x64.float(), torch.randn(batch, 32, h, w, device=device)
            x64.requires_grad_()
            expected = ref(x64)
            (expected * weight.double()).sum().backward()
            xi = x.clone().requires_grad_()
            out = compiled(xi)
            (out * weight).sum().backward()
            errors.append((worst([rel_error(out, expected), rel_error(xi.grad, x64.grad)]),
                           f'{pad_mode}, region {p}, shift {shift}, {batch}x32x{h}x{w}'))
            ref.zero_grad()
    error, where = max(errors, key=lambda e: severity(e[0]))
    report.check(f'compiled Hire module (static sizes), outputs and input gradients '
                 f'(worst: {where}; {len(errors)} compiles in '
                 f'{time.perf_counter() - start:.0f} s)', error, 1e-4)


def compile_backbone_checks(report, args):
    """Step 6: the small HireMLP under torch.compile(fullgraph=True)."""
    from mmhire.analysis.numeric import draw_away_from_kinks, rel_error
    device = args.device
    model, model64 = small_backbones(device)
    # compiled float32 rounds differently from float64: keep both on the same side of every
    # ReLU
    x64, = draw_away_from_kinks(
        model64.train(), lambda: (torch.randn(2, 3, 197, 263, device=device).double(),))
    x = x64.float()
    start = time.perf_counter()
    compiled = strict_compile(model)
    model.eval()
    with torch.no_grad():
        expected = model64.eval()(x64)
        outs = compiled(x)
    print(f'  (inference compiled in {time.perf_counter() - start:.0f} s)', flush=True)
    report.check('compiled inference vs float64',
                 worst(rel_error(o, e) for o, e in zip(outs, expected)), 1e-4)
    x64.requires_grad_()
    expected = model64.train()(x64)
    projections = [torch.randn_like(o) for o in expected]
    loss(expected, projections).backward()
    xb = x.clone().requires_grad_()
    model.train()
    start = time.perf_counter()
    outs = compiled(xb)
    loss(outs, projections).backward()
    print(f'  (training step compiled in {time.perf_counter() - start:.0f} s)', flush=True)
    report.check('compiled training step vs float64, outputs and input gradient',
                 worst([rel_error(o, e) for o, e in zip(outs, expected)]
                       + [rel_error(xb.grad, x64.grad)]), 1e-4)


CHECKS = (
    ('module', 'Hire module, eager: fast and plain paths against float64, batch 1 and 2',
     module_checks),
    ('backbone', 'small HireMLP, eager: fast and plain training step, fused inference',
     backbone_checks),
    ('fp16', 'fp16 autocast: unit-scale inputs, and a Hire module on large activations',
     fp16_checks),
    ('fp16-backbone', 'fp16 autocast: HireMLP-S', fp16_backbone_checks),
    ('compile-module', 'torch.compile(fullgraph=True): single Hire modules, static sizes',
     compile_module_checks),
    ('compile-backbone', 'torch.compile(fullgraph=True): small HireMLP', compile_backbone_checks),
)


def run_check(report, clock, heading, key, fn, args):
    """One step; interrupted (SIGALRM) at the deadline. Returns False if it was."""
    left = clock.left()
    print(heading, flush=True)

    def alarm(signum, frame):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, left)
    start = time.monotonic()
    try:
        fn(report, args)
        print(f'  ({time.monotonic() - start:.0f} s)', flush=True)
    except BaseException as e:  # noqa: BLE001
        signal.setitimer(signal.ITIMER_REAL, 0)
        # (a TimeLimit raised inside torch.compile may come back wrapped in another error)
        if isinstance(e, TimeLimit) or clock.left() <= 0:
            _finishing.set()
            print(f'  stopped by the time limit ({clock.limit:g} s)', flush=True)
            report.stopped.append(heading)
            return False
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc()
        print(f'  FAIL {key}: crashed ({type(e).__name__}: '
              f'{(str(e).strip().splitlines() or [""])[0][:300]})', flush=True)
        report.failed.append(f'{key} (crashed)')
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return True


def benchmark_jobs(args):
    """Eager rows first, then compiled ones; within each: batch, precision, model, mode."""
    from mmhire.analysis.speed import COMPILED, INFERENCE_ONLY, LABELS, Job
    eager = list(args.models)
    compiled = [m + COMPILED for m in eager if m + COMPILED in LABELS] if args.compile else []
    modes = ('infer',) if args.no_train else ('infer', 'train')
    jobs = []
    for group, train_ok in ((eager, True), (compiled, args.compile_train)):
        for batch, amp, model, mode in itertools.product(
                args.batches, (False, True) if args.amp else (False,), group, modes):
            if mode == 'train' and (model in INFERENCE_ONLY or not train_ok):
                continue
            jobs.append(Job(model, mode, tuple(args.size), batch, args.threads, args.warmup,
                            args.repeats, args.device, amp))
    return jobs


def row_text(job, result=None, error=None):
    from mmhire.analysis.speed import LABELS, amp_dtype_name
    precision = amp_dtype_name(job.device) if job.amp else 'float32'
    cells = [LABELS.get(job.model, job.model), job.mode, str(job.batch), precision]
    if result is not None:
        cells += [f"{result['median'] * 1e3:.1f}", f"{result['peak_mb']:.0f}",
                  f"{result['first_call']:.1f}"]
    else:
        cells += [error or 'did not run', '', '']
    return '| ' + ' | '.join(cells) + ' |'


def benchmark(report, clock, args):
    """Step 7: the rows, each printed as it comes from a process group of its own."""
    jobs = benchmark_jobs(args)
    heading = (f'{len(CHECKS) + 1}. benchmark: {len(jobs)} rows at {args.size[0]}x{args.size[1]}'
               f', median of {args.repeats} after {args.warmup} warm-up, one process per row')
    if clock.left() <= 0:
        report.not_run.append(heading)
        report.not_run.extend(row_text(j) for j in jobs)
        return
    print(heading, flush=True)
    if device_is_cuda(args.device):
        torch.cuda.empty_cache()  # the checks' cached blocks, for the benchmark's processes
    spec = json.dumps([list(j) for j in jobs])
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--benchmark-jobs', spec,
         '--parent-pid', str(os.getpid()), '--allocator', args.allocator],
        cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True)
    _benchmark_group[:] = [proc.pid]
    print(f'  (benchmark process {proc.pid}, in process group {proc.pid} of its own)')
    print('| backbone | mode | batch | precision | median (ms) | peak (MB) | first call (s) |')
    print('|---|---|---|---|---|---|---|', flush=True)
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    done = 0
    timed_out = False
    while True:
        try:
            left = clock.left()
            if left <= 0:
                raise queue.Empty
            line = lines.get(timeout=left)
        except queue.Empty:
            _finishing.set()
            timed_out = True
            break
        if line is None:
            break
        if not line.startswith(RESULT):
            print(line, end='', flush=True)  # whatever the jobs printed themselves
            continue
        got = json.loads(line[len(RESULT):])
        job = jobs[done]
        done += 1
        print(row_text(job, got['result'], got['error'] and 'FAILED: ' + got['error']),
              flush=True)
        if got['error']:
            report.failed.append('benchmark ' + row_text(job, error=got['error']))
    if timed_out:
        left_behind = kill_group(proc.pid, proc)
        print(f'  benchmark stopped by the time limit ({clock.limit:g} s): process group '
              f'{proc.pid} killed, ' + (f'{len(left_behind)} process(es) left: {left_behind}'
                                        if left_behind else 'no process left'), flush=True)
        if done < len(jobs):
            print(row_text(jobs[done], error='KILLED: time limit'), flush=True)
            report.failed.append('benchmark ' + row_text(jobs[done], error='killed by the '
                                                         'time limit'))
            report.stopped.append(heading)
            report.not_run.extend(row_text(j) for j in jobs[done + 1:])
        if left_behind:
            report.failed.append(f'benchmark process group {proc.pid}: processes left behind')
    else:
        proc.wait()
        if done < len(jobs):
            message = f'benchmark process exited with status {proc.returncode}'
            report.failed.append(f'{message} after {done} of {len(jobs)} rows')
            for job in jobs[done:]:
                print(row_text(job, error=f'did not run ({message})'), flush=True)
        if group_members(proc.pid):  # (nothing should be left once the leader has exited)
            kill_group(proc.pid, proc, grace=1.0)
        report.benchmarked = True
    _benchmark_group.clear()


def benchmark_child(spec, parent_pid, allocator):
    """The benchmark process (its own session): run the jobs, one result line each."""
    try:  # die with the parent, whatever kills it (Linux)
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        return 1
    # SIGTERM (from the parent, or the parent's death): take the whole group down at once
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(os.getpgrp(), signal.SIGKILL))
    from mmhire.analysis.speed import Job, iter_jobs
    jobs = [Job(j[0], j[1], tuple(j[2]), *j[3:]) for j in json.loads(spec)]
    for job, result, error in iter_jobs(jobs, allocator):
        if result is not None:
            result = {k: float(result[k]) for k in ('median', 'peak_mb', 'first_call')}
        print(RESULT + json.dumps(dict(result=result, error=error)), flush=True)
    return 0


def device_is_cuda(device):
    return torch.device(device).type == 'cuda'


def start_watchdog(clock):
    """Ends the process at the time limit if the running step did not stop at the deadline
    (blocked where no signal handler runs). Once the main thread is wrapping up (stopping the
    benchmark, printing the summary) it gets 10 s more."""
    def watch():
        if time.monotonic() >= clock.deadline:  # nothing will run: only the summary is left
            _finishing.set()
        while time.monotonic() < clock.end:
            time.sleep(min(1.0, max(clock.end - time.monotonic(), 0.01)))
        if _finishing.is_set():
            time.sleep(10)  # (a daemon thread: it ends with the process)
        print(f'gpu_check: time limit ({clock.limit:g} s) reached and the running step did not '
              'stop; exiting (exit 3)', flush=True)
        if _benchmark_group:
            kill_group(_benchmark_group[0], grace=0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def parse_args(argv=None):
    from mmhire.analysis.speed import COMPILE_MODELS, MODELS
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda',
                        help="default cuda; 'cpu' is a dry run of the whole script")
    parser.add_argument('--time-limit', type=float, default=300,
                        help='seconds for the whole run, imports included (default 300)')
    parser.add_argument('--skip', nargs='+', default=[], choices=STEPS, metavar='STEP',
                        help=f'steps to leave out: {" ".join(STEPS)}')
    parser.add_argument('--no-compile', action='store_true',
                        help='leave out the torch.compile steps and benchmark rows')
    parser.add_argument('--no-benchmark', action='store_true', help='same as --skip benchmark')
    parser.add_argument('--fp16-backbone-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input of the HireMLP-S fp16 check (default 1024 2048; on the '
                        'CPU 256 512)')
    bench = parser.add_argument_group('benchmark')
    bench.add_argument('--size', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'))
    bench.add_argument('--models', nargs='+', default=['hire_s_fast', 'resnet50'],
                       choices=MODELS, help='eager backbones; each with its +compile '
                       f'variant where there is one ({" ".join(COMPILE_MODELS[1::2])}) '
                       '(default: hire_s_fast resnet50)')
    bench.add_argument('--batches', type=int, nargs='+', default=[1, 2])
    bench.add_argument('--no-amp', dest='amp', action='store_false',
                       help='float32 rows only (by default also fp16 autocast rows on CUDA, '
                       'bf16 on the CPU)')
    bench.add_argument('--no-train', action='store_true', help='inference rows only')
    bench.add_argument('--compile-train', action='store_true',
                       help='also compiled training-step rows (each a cold compile of a '
                       'training step: minutes)')
    bench.add_argument('--warmup', type=int, default=3)
    bench.add_argument('--repeats', type=int, default=10)
    bench.add_argument('--threads', type=int, default=2, help='CPU threads of each row')
    bench.add_argument('--allocator', choices=('system', 'retain'), default='system')
    parser.add_argument('--benchmark-jobs', help=argparse.SUPPRESS)  # (the benchmark process)
    parser.add_argument('--parent-pid', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.benchmark_jobs:
        return args
    if min(args.batches) < 1 or args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error('--batches, --repeats and --threads must be at least 1, --warmup at '
                     'least 0')
    if args.time_limit <= 0:
        parser.error('--time-limit must be positive')
    args.skip = set(args.skip)
    if args.no_benchmark:
        args.skip.add('benchmark')
    if args.no_compile:
        args.skip.update(COMPILE_STEPS)
    args.compile = not args.no_compile
    if args.fp16_backbone_size is None:
        args.fp16_backbone_size = (1024, 2048) if device_is_cuda(args.device) else (256, 512)
    return args


def main(argv=None):
    sys.path.insert(0, ROOT)
    args = parse_args(argv)
    if args.benchmark_jobs:
        return benchmark_child(args.benchmark_jobs, args.parent_pid, args.allocator)
    if device_is_cuda(args.device) and not torch.cuda.is_available():
        print('gpu_check: no CUDA device visible, nothing to check here (exit 0)')
        return 0
    clock = Clock(args.time_limit)
    start_watchdog(clock)

    def terminate(signum, frame):  # killed from outside: take the benchmark down too
        if _benchmark_group:
            kill_group(_benchmark_group[0], grace=0.5)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    cuda = device_is_cuda(args.device)
    name = torch.cuda.get_device_name(args.device) if cuda else 'CPU (dry run)'
    print(f'gpu_check on {name}, torch {torch.__version__}, time limit {args.time_limit:g} s',
          flush=True)
    if not cuda and 'fp16-backbone' not in args.skip and tuple(
            args.fp16_backbone_size) != (1024, 2048):
        print(f'  (HireMLP-S fp16 check at {args.fp16_backbone_size[0]}x'
              f'{args.fp16_backbone_size[1]}, not 1024x2048: the CPU is too slow for it)')
    # cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa): these checks are of
    # float32 formulations against each other, so they run in true float32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    report = Report()
    for number, (key, title, fn) in enumerate(CHECKS, 1):
        if key in args.skip:
            continue
        if report.stopped or clock.left() <= 0:
            report.not_run.append(f'{number}. {key}: {title}')
        else:
            run_check(report, clock, f'{number}. {key}: {title}', key, fn, args)
    if 'benchmark' not in args.skip:
        benchmark(report, clock, args)
    return summary(report, clock)


def summary(report, clock):
    elapsed = time.monotonic() - T0
    print(f'\ngpu_check: {report.passed} check(s) passed in {elapsed:.0f} s', flush=True)
    if report.stopped or report.not_run:
        print(f'gpu_check: the time limit ({clock.limit:g} s) stopped the run',
              flush=True)
        for item in report.stopped:
            print(f'  stopped: {item}')
        for item in report.not_run:
            print(f'  did not run: {item}')
    if report.failed:
        print(f'gpu_check: {len(report.failed)} failure(s):')
        for item in report.failed:
            print(f'  {item}')
    sys.stdout.flush()
    if report.failed:
        return 1
    if report.stopped or report.not_run:
        return 3
    print('gpu_check: all checks passed' + (', every benchmark row measured'
                                            if report.benchmarked else ''), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
