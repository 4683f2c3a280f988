"""Speed and memory of HireMLP (fast, fused and plain paths) against ResNet-50, Swin-T and PVTv2-b2.

    python tools/benchmark.py                                  # 1x3x800x1216, 2 threads
    python tools/benchmark.py --size 512 512 --batch 2 --threads 4 --png bench.png
    python tools/benchmark.py --amp                            # + bf16 (CPU) / fp16 (CUDA) rows
    python tools/benchmark.py --device cuda                    # GPU, synchronised timing
    python tools/benchmark.py --compile                        # + torch.compile rows
    python tools/benchmark.py --onnxruntime                    # + onnxruntime rows (CPU)
    python tools/benchmark.py --count-launches                 # launch counts instead, 3x256x320

For every backbone it reports params, MACs at the input size, median inference latency, median
training-step time (forward + backward), peak memory of each, and the achieved rate
(2 x MACs / time) as a share of this machine's float32 matrix-multiply rate, which is measured
in the same run (the better of one measurement before and one after the models). Each
(model, mode) runs in a fresh process (see :mod:`mmhire.analysis.speed`). Compare ratios
within one run: these machines are shared. Resolution scaling: ``tools/benchmark_scaling.py``;
one Hire module per stage: ``tools/benchmark_hire_modules.py``.

``--count-launches`` is a separate mode that times nothing: in this one process it counts the
operators that a forward (eval, no_grad) and a training step (forward + backward of the sum of
the outputs) dispatch at batch 1, 2 and 8 (``--count-batches``), views, allocations and
metadata queries left out: a proxy for a GPU's kernel launches (the rule:
:mod:`mmhire.analysis.launches`). It prints one table, with what each extra image adds
(count at batch 2 minus batch 1, and (batch 8 - batch 2) / 6): flat in the batch means 0.
Default models HireMLP-S fast, plain and fused (no training step), ResNet-50 and Swin-T, at
3x256x320 unless ``--size`` is given; ``--models``, ``--device``, ``--threads`` and
``--no-train`` apply, the timing options do not.
"""
import argparse
import warnings

warnings.filterwarnings('ignore')
from mmhire.analysis.launches import BATCHES as COUNT_BATCHES  # noqa: E402
from mmhire.analysis.launches import SHAPE as COUNT_SIZE  # noqa: E402
from mmhire.analysis.speed import (COMPILE_MODELS, COMPILED, INFERENCE_ONLY, MODELS,  # noqa
                                   ORT, ORT_MODELS, Job, add_run_args, add_timing_args,
                                   amp_dtype_name,
                                   check_args, complexity, label, matmul_rate, rounds_note,
                                   run_jobs)
from mmhire.env import cpu_description  # noqa: E402

TIMING_SIZE = (800, 1216)
COUNT_MODELS = ('hire_s_fast', 'hire_s_plain', 'hire_s_fused', 'resnet50', 'swin_t')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help=f'input size (default: {TIMING_SIZE[0]} {TIMING_SIZE[1]}; with '
                        f'--count-launches {COUNT_SIZE[0]} {COUNT_SIZE[1]})')
    add_timing_args(parser)
    parser.add_argument('--models', nargs='+',
                        choices=MODELS + COMPILE_MODELS[1::2] + ORT_MODELS[1::2],
                        help=f'default: {" ".join(MODELS)} ({" ".join(COMPILE_MODELS)} with '
                        f'--compile, {" ".join(ORT_MODELS)} with --onnxruntime)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile rows (compile time, then steady state) next to eager')
    parser.add_argument('--onnxruntime', action='store_true',
                        help='rows of each backbone exported to ONNX (as mmdeploy exports: '
                        'TorchScript exporter) and run in onnxruntime, next to eager; '
                        'inference only, needs the deploy extra')
    parser.add_argument('--amp', action='store_true',
                        help='autocast rows (bf16 on CPU, fp16 on CUDA) next to the float32 ones')
    parser.add_argument('--no-train', action='store_true', help='inference only')
    parser.add_argument('--count-launches', action='store_true',
                        help='instead of timing: count the operators a forward and a '
                        'training step dispatch (views, allocations and metadata queries left '
                        'out: a proxy for kernel launches), at each of --count-batches; '
                        f'default models {" ".join(COUNT_MODELS)}, default size '
                        f'{COUNT_SIZE[0]} {COUNT_SIZE[1]}')
    parser.add_argument('--count-batches', type=int, nargs='+', default=list(COUNT_BATCHES),
                        metavar='B', help='batch sizes of --count-launches (default: %(default)s)')
    add_run_args(parser)
    args = parser.parse_args(argv)
    if args.count_launches:
        return check_count_args(parser, args)
    args.size = args.size or TIMING_SIZE
    if args.onnxruntime and args.device != 'cpu':
        parser.error('--onnxruntime times the CPU execution provider; leave --device out')
    check_args(parser, args)
    if args.onnxruntime:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            parser.error("--onnxruntime needs onnxruntime: pip install -e '.[deploy]'")
    if args.models is None:
        args.models = list(COMPILE_MODELS if args.compile else ORT_MODELS if args.onnxruntime
                           else MODELS)
        if args.compile and args.onnxruntime:
            args.models += [m for m in ORT_MODELS if m not in args.models]
    if args.amp and not args.device.startswith('cuda'):
        from mmhire.engine.amp import cpu_bf16_note
        note = cpu_bf16_note()
        if note:
            print(note)
    return args


def check_count_args(parser, args):
    """The options of ``--count-launches``: eager models only, no timing extras."""
    extras = [flag for flag, on in (('--compile', args.compile), ('--onnxruntime',
                                    args.onnxruntime), ('--amp', args.amp),
                                    ('--png', args.png)) if on]
    if extras:
        parser.error(f'--count-launches counts eager float32 models and draws nothing; '
                     f'leave out {" ".join(extras)}')
    if args.models is None:
        args.models = list(COUNT_MODELS)
    wrong = [m for m in args.models if m not in MODELS]
    if wrong:
        parser.error(f'--count-launches counts eager models: {" ".join(wrong)} is not one '
                     f'of {" ".join(MODELS)}')
    if min(args.count_batches) < 1 or len(set(args.count_batches)) != len(args.count_batches):
        parser.error('--count-batches must be distinct batch sizes of at least 1')
    if args.threads < 1:
        parser.error('--threads must be at least 1')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error('--device cuda but no CUDA GPU is visible; leave --device out (cpu)')
    args.size = args.size or COUNT_SIZE
    args.count_batches = sorted(args.count_batches)
    return args


def count_launches_table(args):
    """The ``--count-launches`` mode: every model counted in this process, one table."""
    import sys

    import torch

    from mmhire.analysis.launches import format_table, launch_row
    torch.set_num_threads(args.threads)
    shape = tuple(args.size)
    rows = []
    for m in args.models:
        print(f'  counting {label(m)} ...', file=sys.stderr, flush=True)
        rows.append(launch_row(m, shape, args.count_batches, train=not args.no_train,
                               device=args.device))
    steps = ('forward (eval, no_grad)' + ('' if args.no_train else
             ' and a training step (forward + backward of the sum of the outputs)'))
    print(f'\nLaunch counts: aten operators dispatched by a {steps}, views, allocations '
          f'and metadata queries left out (mmhire.analysis.launches), at Bx3x{shape[0]}x'
          f'{shape[1]}, {args.device}, torch {torch.__version__}\n')
    print(format_table(rows, train=not args.no_train))
    print('(each extra image adds: the count\'s growth per image between consecutive batch '
          'sizes; 0 is flat in the batch)')


def main(argv=None):
    args = parse_args(argv)
    if args.count_launches:
        return count_launches_table(args)
    shape = tuple(args.size)
    modes = ['infer'] + ([] if args.no_train else ['train'])
    precisions = [False, True] if args.amp else [False]
    jobs = [Job(m, mode, shape, args.batch, args.threads, args.warmup, args.repeats,
                args.device, amp)
            for m in args.models for amp in precisions for mode in modes
            if mode == 'infer' or (m not in INFERENCE_ONLY and not m.endswith(ORT))
            if not (amp and m.endswith(ORT))]
    # The machine is shared: take the better of a measurement before and one after the models.
    rate = matmul_rate(args.threads, args.device)
    results = {(r['job'].model, r['job'].amp, r['job'].mode): r
               for r in run_jobs(jobs, args.rounds, args.allocator)}
    rate = max(rate, matmul_rate(args.threads, args.device))
    amp_note = f', autocast rows in {amp_dtype_name(args.device)}' if args.amp else ''
    print(f'\nCPU: {cpu_description()}')
    print(f'Backbones at {args.batch}x3x{shape[0]}x{shape[1]}, {args.threads} threads, '
          f'{args.device}{amp_note}, median of {args.repeats} after {args.warmup} '
          f'warm-up{rounds_note(args)}; allocator {args.allocator}; '
          f'float32 matmul rate {rate / 1e9:.1f} GFLOP/s\n')
    header = ('| backbone | params (M) | GMACs | inference (ms) | achieved | '
              'infer peak (MB) |')
    if 'train' in modes:
        header += ' train step (ms) | train peak (MB) |'
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    rows = []
    for m in args.models:
        params, macs = complexity(m, shape)
        for amp in precisions:
            if (m, amp, 'infer') not in results:
                continue
            inf = results[(m, amp, 'infer')]
            flops = 2 * macs * args.batch
            line = (f"| {label(m, amp, args.device)} | {params / 1e6:.1f} | {macs / 1e9:.1f} | "
                    f"{inf['median'] * 1e3:.0f} | {flops / inf['median'] / rate:.0%} | "
                    f"{inf['peak_mb']:.0f} |")
            row = dict(model=m, amp=amp, label=label(m, amp, args.device), params=params,
                       macs=macs, infer=inf['median'], infer_peak=inf['peak_mb'])
            if 'train' in modes and (m in INFERENCE_ONLY or m.endswith(ORT)):
                line += ' - | - |'
            elif 'train' in modes:
                tr = results[(m, amp, 'train')]
                line += f" {tr['median'] * 1e3:.0f} | {tr['peak_mb']:.0f} |"
                row.update(train=tr['median'], train_peak=tr['peak_mb'])
            rows.append(row)
            print(line)
    print_compile_table(args, results, precisions)
    print_onnxruntime_table(args, results)
    print_ratios(rows, args)
    if args.png:
        plot_bars(rows, args.png, shape)


def print_compile_table(args, results, precisions):
    compiled = [m for m in args.models if m.endswith(COMPILED)]
    if not compiled:
        return
    print('\n| compiled backbone | first inference call (s) | first training step (s) | '
          'inference vs eager | training step vs eager |')
    print('|---|---|---|---|---|')
    for m in compiled:
        eager = m.removesuffix(COMPILED)
        for amp in precisions:
            got = {mode: results.get((m, amp, mode)) for mode in ('infer', 'train')}
            base = {mode: results.get((eager, amp, mode)) for mode in ('infer', 'train')}
            cells = [f"{got[mode]['first_call']:.1f}" if got[mode] else '-'
                     for mode in ('infer', 'train')]
            ratios = [f"{base[mode]['median'] / got[mode]['median']:.2f}x"
                      if got[mode] and base[mode] else '-' for mode in ('infer', 'train')]
            print(f'| {label(m, amp, args.device)} | ' + ' | '.join(cells + ratios) + ' |')
    print('(first call = compiling plus one run; vs eager > 1 means the compiled model is '
          'faster)')


def print_onnxruntime_table(args, results):
    exported = [m for m in args.models if m.endswith(ORT)]
    if not exported:
        return
    rows = {m: results[(m, False, 'infer')] for m in exported}
    resnet = rows.get('resnet50' + ORT)
    print('\n| onnxruntime backbone | export (s) | inference (ms) | vs its eager PyTorch | '
          'vs ResNet-50 onnxruntime |')
    print('|---|---|---|---|---|')
    for m, got in rows.items():
        eager = results.get((m.removesuffix(ORT), False, 'infer'))
        vs_eager = f"{eager['median'] / got['median']:.2f}x" if eager else '-'
        vs_resnet = f"{resnet['median'] / got['median']:.2f}x" if resnet else '-'
        print(f"| {label(m)} | {got['first_call']:.1f} | {got['median'] * 1e3:.0f} | "
              f'{vs_eager} | {vs_resnet} |')
    fast = results.get(('hire_s_fast', False, 'infer'))
    fused = rows.get('hire_s_fused' + ORT)
    if fast and fused:
        print(f"HireMLP-S fused in onnxruntime vs HireMLP-S eager fast path: "
              f"{fast['median'] / fused['median']:.2f}x")
    print('(vs > 1 means the onnxruntime row is faster)')


def print_ratios(rows, args):
    """The comparisons the docs quote, as ratios measured in this run."""
    by = {(r['model'], r['amp']): r for r in rows}
    precision = {False: 'float32', True: amp_dtype_name(args.device)}
    for amp in (False, True):
        get = {m: by[(m, amp)] for m, a in by if a == amp}
        tag = f' ({precision[amp]})' if args.amp else ''
        if {'hire_s_fast', 'hire_s_plain'} <= set(get):
            f, p = get['hire_s_fast'], get['hire_s_plain']
            print(f"\nHireMLP-S fast vs plain{tag}: inference {p['infer'] / f['infer']:.2f}x "
                  'faster'
                  + (f", training step {p['train'] / f['train']:.2f}x faster, training peak "
                     f"memory {f['train_peak'] / max(p['train_peak'], 1e-9):.2f}x of plain"
                     if 'train' in f else ''))
        if {'hire_s_fused', 'hire_s_plain'} <= set(get):
            f, p, r = get['hire_s_fused'], get['hire_s_plain'], get.get('resnet50')
            print(f"HireMLP-S fast+fused vs plain{tag}: inference "
                  f"{p['infer'] / f['infer']:.2f}x faster"
                  + (f"; vs ResNet-50: {r['infer'] / f['infer']:.2f}x" if r else ''))
        if {'hire_s_fast', 'resnet50'} <= set(get):
            f, r = get['hire_s_fast'], get['resnet50']
            print(f"HireMLP-S fast vs ResNet-50{tag}: inference {r['infer'] / f['infer']:.2f}x"
                  + (f", training step {r['train'] / f['train']:.2f}x" if 'train' in f else '')
                  + ' (>1 means HireMLP-S is faster)')
    for m, amp in by:
        if amp and (m, False) in by:
            f32, low = by[(m, False)], by[(m, True)]
            print(f"{low['label']} vs float32: inference {f32['infer'] / low['infer']:.2f}x"
                  + (f", training step {f32['train'] / low['train']:.2f}x" if 'train' in low
                     else '') + ' (>1 means autocast is faster)')


def plot_bars(rows, path, shape):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = [('infer', 'inference (ms)'), ('train', 'train step (ms)'),
            ('infer_peak', 'inference peak (MB)'), ('train_peak', 'train peak (MB)')]
    keys = [k for k in keys if k[0] in rows[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5))
    for ax, (key, title) in zip(axes, keys):
        scale = 1e3 if key in ('infer', 'train') else 1
        shown = [r for r in rows if key in r]
        ax.barh([r['label'] for r in shown], [r[key] * scale for r in shown])
        ax.set_title(title)
        ax.invert_yaxis()
    fig.suptitle(f'Backbones at {shape[0]}x{shape[1]}')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f'chart: {path}')


if __name__ == '__main__':
    main()
