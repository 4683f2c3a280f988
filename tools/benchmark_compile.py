"""What a cold ``torch.compile`` of HireMLP costs, and where the time goes.

    python tools/benchmark_compile.py               # HireMLP-S, 1x3x800x1216, eval + train
    python tools/benchmark_compile.py --modes eval --arch t --size 512 512

Each mode compiles in a fresh process with an empty inductor kernel cache and the graph caches
off (a user's first run on a new machine; see :mod:`mmhire.analysis.compile_cost`). The table
gives the first call (compiling plus one run), how far the compiled outputs are from the eager
model's (largest difference relative to each output's largest value), the number of distinct
C++ kernels, dynamo's phase timers, and the median time gcc takes to build one of the kernels
again next to an empty kernel with the same flags and precompiled header. Steady-state speed
of the compiled model: ``tools/benchmark.py --compile``.
"""
import argparse
import json
import sys
import warnings

warnings.filterwarnings('ignore')
from mmhire.analysis.compile_cost import PHASES, measure_compile  # noqa: E402
from mmhire.env import cpu_description  # noqa: E402


def arch_arg(text):
    if not text.lstrip().startswith('{'):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f'--arch {text!r} is not a JSON dict: {e}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='s', type=arch_arg,
                        help="HireMLP arch: 't', 's', 'b', 'l', or a JSON dict of arch keys, "
                        "e.g. '{\"depths\": [1, 1, 1, 1]}'")
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--modes', nargs='+', choices=('eval', 'train'), default=['eval', 'train'])
    parser.add_argument('--sample', type=int, default=12,
                        help='kernels to build again for the per-kernel gcc time')
    args = parser.parse_args(argv)
    if min(args.size) < 1 or args.batch < 1 or args.threads < 1 or args.sample < 1:
        parser.error('--size, --batch, --threads and --sample must be positive')
    from mmhire import HireMLP
    from mmhire.errors import HireMLPConfigError
    try:  # here, not in the child process that compiles: a bad arch gets one line
        HireMLP(arch=args.arch)
    except HireMLPConfigError as e:
        parser.error(f'--arch: {e}')
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        results = {mode: measure_compile(args.arch, args.size, mode, args.batch, args.threads,
                                         args.sample) for mode in args.modes}
    except RuntimeError as e:  # the compile failed in the child; its error is in the message
        sys.exit(f'benchmark_compile: {e}')
    print(f'\nCPU: {cpu_description()}')
    arch = args.arch if isinstance(args.arch, str) else json.dumps(args.arch)
    print(f'HireMLP {arch} at {args.batch}x3x{args.size[0]}x{args.size[1]}, '
          f'{args.threads} threads, torch.compile(fullgraph=True), cold caches\n')
    names = [name for name, _ in PHASES]
    print('| mode | first call (s) | vs eager (max rel. diff.) | kernels | compile threads | '
          + ' | '.join(f'{n} (s)' for n in names)
          + ' | gcc per kernel (s) | gcc, empty kernel (s) |')
    print('|' + '---|' * (7 + len(names)))
    for mode, r in results.items():
        print(f"| {mode} | {r['first_call']} | {r['max_rel_error']:.1e} | {r['kernels']} | "
              f"{r['compile_threads']} | "
              + ' | '.join(str(r['phases'][n]) for n in names)
              + f" | {r['kernel_build_median']} (median of {r['kernel_build_sampled']}) | "
              f"{r['empty_kernel_build']} |")
    print('(waiting for gcc: after code generation, for the builds still running; gcc per '
          'kernel: one build at a time, where the compile runs `compile threads` at once)')


if __name__ == '__main__':
    main()
