"""Forward + backward of one Hire module per stage of HireMLP-S, fast vs plain path.

    python tools/benchmark_hire_modules.py                     # map sizes of a 800x1216 input
    python tools/benchmark_hire_modules.py --size 512 512 --batch 2

Each stage's second block (the first one with a shift) at the map size it sees for ``--size``;
fast and plain interleaved in this process, inputs channels-last for the fast path (as the
backbone feeds it). Maps too small for folding ``proj`` to pay say so: the fast path keeps
``proj`` unfolded there (:func:`~mmhire.models.layers.branch_folding.folds_weights`).
"""
import argparse
import statistics
import time
import warnings

warnings.filterwarnings('ignore')
from mmhire.analysis.speed import add_timing_args, check_args  # noqa: E402


def stage_blocks(arch='s'):
    """Each stage's second block of a HireMLP (its first shifted one)."""
    import torch

    from mmhire import HireMLP
    backbone = HireMLP(arch=arch).eval()
    stages = [s for s in backbone.network if isinstance(s, torch.nn.Sequential)]
    return [stage[min(1, len(stage) - 1)] for stage in stages]


def time_pair(modules, inputs, warmup, repeats):
    """Median forward + backward time of each module, interleaved round by round."""
    import torch
    times = {k: [] for k in modules}
    for i in range(warmup + repeats):
        for k, module in modules.items():
            x = inputs[k].detach().requires_grad_()
            t = time.perf_counter()
            out = module(x)
            out.backward(torch.ones_like(out))
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'))
    add_timing_args(parser)
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.device != 'cpu':
        parser.error('this table times the CPU paths; leave --device out')

    import torch

    from mmhire import HireMLP
    from mmhire.models.layers import HireModule
    from mmhire.models.layers.branch_folding import folds_weights
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blocks = stage_blocks('s')
    sizes = HireMLP.stage_sizes(*args.size)
    from mmhire.env import cpu_description
    print(f'\nCPU: {cpu_description()}')
    print(f'Hire modules of HireMLP-S at {args.size[0]}x{args.size[1]} input, batch '
          f'{args.batch}, {args.threads} threads, forward + backward, median of {args.repeats} '
          f'after {args.warmup} warm-up, fast and plain interleaved\n')
    print('| stage | map | C | region | shift | fast (ms) | plain (ms) | plain / fast |')
    print('|---|---|---|---|---|---|---|---|')
    for stage, (block, (h, w)) in enumerate(zip(blocks, sizes)):
        attn = block.attn
        modules = {fast: HireModule(attn.embed_dims, attn.region_size, attn.shift,
                                    attn.pad_mode, fast=fast).train() for fast in (True, False)}
        modules[False].load_state_dict(modules[True].state_dict())
        x = torch.randn(args.batch, attn.embed_dims, h, w)
        inputs = {True: x.contiguous(memory_format=torch.channels_last), False: x}
        med = time_pair(modules, inputs, args.warmup, args.repeats)
        f, p = med[True] * 1e3, med[False] * 1e3
        path = '' if folds_weights(attn, h, w) else ' (proj unfolded: small map)'
        print(f'| {stage + 1} | {h}x{w} | {attn.embed_dims} | {attn.region_size} | '
              f'{attn.shift} | {f:.1f}{path} | {p:.1f} | {p / f:.2f}x |')


if __name__ == '__main__':
    main()
