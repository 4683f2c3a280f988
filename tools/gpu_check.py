"""The prepared GPU check: correctness of every HireMLP formulation on CUDA, then the benchmark.

    python tools/gpu_check.py                 # about 5 minutes on one GPU
    python tools/gpu_check.py --no-benchmark  # the correctness checks only (about 1 minute)
    python tools/gpu_check.py --device cpu --no-compile --no-benchmark  # a dry run on the CPU

Checks, each against a float64 run of the plain path (the released formulation) on the same
GPU, at odd sizes:

1. one Hire module per pad mode and (region size, shift): the eager fast path, the plain path
   the graph path (what ONNX export and ``torch.compile(dynamic=True)`` record) and the
   compiled formulation (what ``torch.compile`` runs with static sizes, per-image and
   batched), outputs and gradients;
2. HireMLP-T, random weights and BatchNorm statistics: fast and plain, a training step
   (outputs and input gradients) and inference with the BatchNorms fused;
3. fp16 autocast: the fast path's outputs against float32;
4. ``torch.compile(fullgraph=True)``: inference and a training step against eager.

Then ``tools/benchmark.py --device cuda --compile --amp`` (eager, compiled, fp16 rows). On a
machine without a CUDA device it prints one line and exits 0. Exit status 1 if a check fails.
"""
import argparse
import copy
import itertools
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = dict(depths=[1, 2, 2, 1], embed_dims=[16, 32, 48, 64])


def rel_error(a, b):
    """Largest difference relative to the reference's largest magnitude."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


class Report:
    def __init__(self):
        self.failed = []

    def check(self, name, error, tol):
        ok = error <= tol
        print(f'  {"ok  " if ok else "FAIL"} {name}: {error:.2e} (tolerance {tol:.0e})',
              flush=True)
        if not ok:
            self.failed.append(name)


def loss(outs, projections):
    return sum((o * w.to(o.dtype)).sum() for o, w in zip(outs, projections))


def module_checks(report, device):
    from mmhire.analysis.numeric import draw_away_from_kinks, randomize_norms
    from mmhire.models.layers import HireModule
    from mmhire.models.layers.compiled import hire_compiled
    print('1. Hire module: fast, plain, graph and compiled formulations against float64',
          flush=True)
    torch.manual_seed(0)
    worst = {}
    for pad_mode, (p, shift) in itertools.product(
            ('circular', 'constant', 'replicate'), ((1, 0), (2, 1), (3, 2), (4, 2), (4, 3))):
        ref = randomize_norms(HireModule(32, p, shift, pad_mode, fast=False)).to(device).train()
        module = HireModule(32, p, shift, pad_mode).to(device).train()
        module.load_state_dict(ref.state_dict())
        ref = ref.double()
        # 70x90 is big enough for the fast path (it needs > C (p + 1) positions); 2x9 pads
        # the height beyond the map. (No 1x1 map in training mode: BatchNorm over two values
        # per channel makes every path's float32 gradient noisy.)
        for size in ((70, 90), (7, 5), (2, 9)):
            # float32 values, so that x64 holds exactly the float32 input
            x64, = draw_away_from_kinks(
                ref, lambda: (torch.randn(2, 32, *size, device=device).double(),))
            x, weight = x64.float(), torch.randn(2, 32, *size, device=device)
            x64.requires_grad_()
            expected = ref(x64)
            (expected * weight.double()).sum().backward()
            for path, run in (('fast', module), ('plain', module._forward_plain),
                              ('graph', module.forward_traceable),
                              ('compiled', lambda t: hire_compiled(module, t)),
                              ('compiled, batched',
                               lambda t: hire_compiled(module, t, batched=True))):
                xi = x.clone().requires_grad_()
                out = run(xi)
                (out * weight).sum().backward()
                error = max(rel_error(out, expected), rel_error(xi.grad, x64.grad))
                if error > worst.get(path, (0.,))[0]:
                    worst[path] = (error, f'{pad_mode}, region {p}, shift {shift}, {size}')
            ref.zero_grad()
    for path, (error, where) in worst.items():
        report.check(f'{path} path, outputs and input gradients (worst: {where})', error, 1e-4)


def backbone_checks(report, device):
    from mmhire import HireMLP
    from mmhire.analysis.numeric import draw_away_from_kinks, randomize_norms
    print('2. HireMLP-T: fast and plain training step, fused inference', flush=True)
    torch.manual_seed(0)
    ref = randomize_norms(HireMLP(arch=TINY, fast=False)).to(device)
    fast = HireMLP(arch=TINY).to(device)
    fast.load_state_dict(ref.state_dict())
    ref64 = HireMLP(arch=TINY, fast=False).to(device).double()
    ref64.load_state_dict(ref.state_dict())
    x64, = draw_away_from_kinks(
        ref64.train(), lambda: (torch.randn(2, 3, 197, 263, device=device).double(),))
    x = x64.float()
    x64.requires_grad_()
    expected = ref64.train()(x64)
    # a random projection of each output as the loss: sum(o * o) would be almost constant
    # behind the output norms, and its input gradient a difference of large terms, 3e-3 off
    # in float32 on every path
    projections = [torch.randn_like(o) for o in expected]
    loss(expected, projections).backward()
    for name, model in (('fast', fast), ('plain', ref)):
        xi = x.clone().requires_grad_()
        outs = model.train()(xi)
        loss(outs, projections).backward()
        error = max([rel_error(o, e) for o, e in zip(outs, expected)]
                    + [rel_error(xi.grad, x64.grad)])
        report.check(f'{name}, training step, outputs and input gradient', error, 1e-4)
    with torch.no_grad():
        expected = ref64.eval()(x.double())
        fused = HireMLP(arch=TINY).to(device)
        fused.load_state_dict(ref.state_dict())
        outs = fused.eval().fuse()(x)
        report.check('fused, inference', max(rel_error(o, e) for o, e in zip(outs, expected)),
                     1e-4)
        if device == 'cpu':
            return
        print('3. fp16 autocast', flush=True)
        with torch.autocast('cuda', dtype=torch.float16):
            outs = fast.eval()(x)
        report.check('fast path under fp16 autocast vs float64',
                     max(rel_error(o, e) for o, e in zip(outs, expected)), 2e-2)


def compile_checks(report, device):
    from mmhire import HireMLP
    from mmhire.analysis.numeric import draw_away_from_kinks, randomize_norms
    print('4. torch.compile(fullgraph=True)', flush=True)
    torch.manual_seed(0)
    model = randomize_norms(HireMLP(arch=TINY)).to(device)
    model64 = copy.deepcopy(model).double()
    # compiled float32 rounds differently from float64: keep both on the same side of every ReLU
    x64, = draw_away_from_kinks(
        model64.train(), lambda: (torch.randn(2, 3, 197, 263, device=device).double(),))
    x = x64.float()
    start = time.perf_counter()
    compiled = torch.compile(model, fullgraph=True)
    model.eval()
    with torch.no_grad():
        expected = model64.eval()(x64)
        outs = compiled(x)
    print(f'  (inference compiled in {time.perf_counter() - start:.0f} s)')
    report.check('compiled inference vs float64',
                 max(rel_error(o, e) for o, e in zip(outs, expected)), 1e-4)
    x64.requires_grad_()
    expected = model64.train()(x64)
    projections = [torch.randn_like(o) for o in expected]
    loss(expected, projections).backward()
    xb = x.clone().requires_grad_()
    model.train()
    start = time.perf_counter()
    outs = compiled(xb)
    loss(outs, projections).backward()
    print(f'  (training step compiled in {time.perf_counter() - start:.0f} s)')
    report.check('compiled training step vs float64, outputs and input gradient',
                 max([rel_error(o, e) for o, e in zip(outs, expected)]
                     + [rel_error(xb.grad, x64.grad)]), 1e-4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda',
                        help="'cpu' runs checks 1, 2 and 4 on the CPU (a dry run of this script)")
    parser.add_argument('--no-compile', action='store_true', help='skip check 4')
    parser.add_argument('--no-benchmark', action='store_true', help='skip the benchmark table')
    parser.add_argument('--benchmark-timeout', type=int, default=210,
                        help='seconds the benchmark may take before it is stopped')
    args = parser.parse_args(argv)
    device = args.device
    if device.startswith('cuda') and not torch.cuda.is_available():
        print('gpu_check: no CUDA device visible, nothing to check here (exit 0)')
        return 0
    sys.path.insert(0, os.path.dirname(HERE))
    name = torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU (dry run)'
    print(f'gpu_check on {name}, torch {torch.__version__}', flush=True)
    # cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa): these checks are of
    # float32 formulations against each other, so they run in true float32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    report = Report()
    module_checks(report, device)
    backbone_checks(report, device)
    if not args.no_compile:
        compile_checks(report, device)
    if not args.no_benchmark and device.startswith('cuda'):
        command = [sys.executable, os.path.join(HERE, 'benchmark.py'), '--device', 'cuda',
                   '--compile', '--amp', '--warmup', '3', '--repeats', '10']
        print('5. ' + ' '.join(command[1:]), flush=True)
        try:
            subprocess.run(command, timeout=args.benchmark_timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f'  benchmark stopped after {args.benchmark_timeout} s (--benchmark-timeout)')
    if report.failed:
        print(f'gpu_check: {len(report.failed)} check(s) failed: {", ".join(report.failed)}')
        return 1
    print('gpu_check: all checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
