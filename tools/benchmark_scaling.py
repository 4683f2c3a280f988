"""Inference latency and peak memory of backbones as the input grows (square sizes + 800x1333).

    python tools/benchmark_scaling.py 224 448 672 896 1120 1344 --png scaling.png
    python tools/benchmark_scaling.py 512 1024 --models hire_s_fast resnet50 --rounds 2

Each (model, size) runs in a fresh process (see :mod:`mmhire.analysis.speed`).
"""
import argparse
import warnings

warnings.filterwarnings('ignore')
from mmhire.analysis.speed import (MODELS, Job, add_run_args, add_timing_args,  # noqa: E402
                                   check_args, label, rounds_note, run_jobs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('sides', type=int, nargs='+', metavar='SIDE',
                        help='square input sizes; 800x1333 is always added')
    add_timing_args(parser)
    parser.add_argument('--models', nargs='+', choices=MODELS, default=list(MODELS))
    parser.add_argument('--amp', action='store_true', help='autocast (bf16 CPU, fp16 CUDA)')
    add_run_args(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)
    if min(args.sides) < 1:
        parser.error('every SIDE must be at least 1')

    sizes = [(s, s) for s in args.sides] + [(800, 1333)]
    jobs = [Job(m, 'infer', size, args.batch, args.threads, args.warmup, args.repeats,
                args.device, args.amp) for size in sizes for m in args.models]
    results = run_jobs(jobs, args.rounds, args.allocator)
    table = {(r['job'].model, r['job'].shape): r for r in results}
    from mmhire.env import cpu_description
    print(f'\nCPU: {cpu_description()}')
    print(f'Inference latency (ms) / peak memory (MB), batch {args.batch}, {args.threads} '
          f'threads, {args.device}, median of {args.repeats}{rounds_note(args)}; '
          f'allocator {args.allocator}\n')
    labels = [label(m, args.amp, args.device) for m in args.models]
    print('| input | ' + ' | '.join(labels) + ' |')
    print('|---|' + '---|' * len(args.models))
    for size in sizes:
        cells = [f"{table[(m, size)]['median'] * 1e3:.0f} / {table[(m, size)]['peak_mb']:.0f}"
                 for m in args.models]
        print(f'| {size[0]}x{size[1]} | ' + ' | '.join(cells) + ' |')
    if args.png:
        plot(table, sizes, args.models, labels, args.png)


def plot(table, sizes, models, labels, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pixels = [h * w / 1e6 for h, w in sizes]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for m, name in zip(models, labels):
        a1.plot(pixels, [table[(m, s)]['median'] * 1e3 for s in sizes], 'o-', label=name)
        a2.plot(pixels, [table[(m, s)]['peak_mb'] for s in sizes], 'o-', label=name)
    a1.set(xlabel='megapixels', ylabel='inference latency (ms)')
    a2.set(xlabel='megapixels', ylabel='inference peak memory (MB)')
    a1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f'chart: {path}')


if __name__ == '__main__':
    main()
