"""Speed and memory of HireMLP (fast, fused and plain paths) against ResNet-50, Swin-T and PVTv2-b2.

    python tools/benchmark.py                                  # 1x3x800x1216, 2 threads
    python tools/benchmark.py --size 512 512 --batch 2 --threads 4 --png bench.png
    python tools/benchmark.py --scaling 224 448 672 896 1120 1344 --png scaling.png
    python tools/benchmark.py --device cuda --amp              # GPU, synchronised timing
    python tools/benchmark.py --hire-modules                   # one Hire module per stage
    python tools/benchmark.py --compile                        # + torch.compile rows

For every backbone it reports params, MACs at the input size, median inference latency, median
training-step time (forward + backward), peak memory of each, and the achieved rate
(2 x MACs / time) as a share of this machine's float32 matrix-multiply rate, which is measured
in the same run (the better of one measurement before and one after the models). Each
(model, mode) runs in a fresh process, so on CPU "peak memory" is that process's peak resident
memory above what it held once the model was built; on CUDA it is
``torch.cuda.max_memory_allocated``. Compare ratios within one run: these machines are shared.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings('ignore')

MODELS = ('hire_s_fast', 'hire_s_fused', 'hire_s_plain', 'resnet50', 'swin_t', 'pvtv2_b2')
COMPILED = '+compile'  # suffix: the same backbone under torch.compile
COMPILE_MODELS = ('hire_s_fast', 'hire_s_fast' + COMPILED, 'resnet50', 'resnet50' + COMPILED)
INFERENCE_ONLY = ('hire_s_fused',)  # fused BatchNorms: no training step
LABELS = {'hire_s_fast': 'HireMLP-S (fast)', 'hire_s_plain': 'HireMLP-S (plain)',
          'hire_s_fused': 'HireMLP-S (fast, fused)',
          'resnet50': 'ResNet-50', 'swin_t': 'Swin-T', 'pvtv2_b2': 'PVTv2-b2',
          'hire_s_fast' + COMPILED: 'HireMLP-S (torch.compile)',
          'resnet50' + COMPILED: 'ResNet-50 (torch.compile)'}


def build(name):
    """The backbone, as MMDetection builds it for its detectors (random init, no download)."""
    name = name.removesuffix(COMPILED)
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


# glibc's malloc, told to keep freed memory for reuse instead of handing it back to the OS. By
# default every buffer above 32 MB is a fresh mmap and frees trim the heap, so a training step
# at 800x1216 page-faults in up to ~1.5 GB of new memory (measured: 90k-400k minor faults and
# 0.3-2 s of system time per step, varying from step to step); that cost depends on the order
# of allocations more than on the model, and makes repeated runs differ by 20% or more. With
# these two settings the faults are gone and what is left is the models' own work. They are
# read when a process starts (mallopt() at run time, measured, leaves most faults in place),
# so they go into the environment of the worker processes. M_TOP_PAD brings faults back.
RETAIN_ENV = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(2**30)}


def measure(job):
    """Runs in its own process: time one model in one mode; returns a dict."""
    import torch
    name, mode, shape, batch, threads, warmup, repeats, device, amp = job
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name).to(device)
    x = torch.randn(batch, 3, *shape, device=device)
    cuda = device.startswith('cuda')
    if mode == 'infer':
        model.eval()
    else:
        model.train()
    if not cuda:
        # RSS can only grow as far as its peak: force a fresh high-water mark after building
        base = current_rss_mb()
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20

    net = model
    if name.endswith(COMPILED):  # HireMLP must compile as one graph; ResNet may break graphs
        net = torch.compile(model, fullgraph=name.startswith('hire'))

    def step():
        with torch.autocast(device_type='cuda' if cuda else 'cpu', enabled=amp,
                            dtype=torch.float16 if cuda else torch.bfloat16):
            if mode == 'infer':
                with torch.no_grad():
                    net(x)
            else:
                outs = net(x)
                sum(o.float().mean() for o in outs).backward()
                model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    times = []
    for i in range(warmup + repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()) - base
    # the first call of a compiled model compiles it (and runs once)
    return dict(model=name, mode=mode, median=statistics.median(times[warmup:]),
                peak_mb=max(peak, 0.0), first_call=times[0])


def complexity(name, shape):
    import torch
    from mmengine.analysis import FlopAnalyzer
    model = build(name)
    model.eval()  # (mmdet's ResNet.train() returns None, so no chaining)
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (torch.randn(1, 3, *shape),))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        macs = analyzer.total()
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


def run_jobs(jobs, rounds=1, allocator='system'):
    """Run every job ``rounds`` times, round-robin (so slow spells of a shared machine hit all
    models alike); a job's result is the median over its rounds of its per-process medians.
    ``allocator='retain'``: the workers start with :data:`RETAIN_ENV`."""
    ctx = mp.get_context('spawn')
    per_job = [[] for _ in jobs]
    saved = {k: os.environ.get(k) for k in RETAIN_ENV}
    if allocator == 'retain':
        os.environ.update(RETAIN_ENV)  # spawned workers inherit it; this process is unaffected
    try:
        for r in range(rounds):
            for i, job in enumerate(jobs):  # one at a time: they would compete for the cores
                with ctx.Pool(1) as pool:
                    res = pool.apply(measure, (job,))
                per_job[i].append(res)
                tag = f' (round {r + 1}/{rounds})' if rounds > 1 else ''
                print(f"  {LABELS[job[0]]:18s} {job[1]:5s} {job[2][0]}x{job[2][1]}: "
                      f"{res['median'] * 1e3:8.1f} ms, peak {res['peak_mb']:7.0f} MB{tag}",
                      file=sys.stderr, flush=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [dict(runs[0], median=statistics.median(r['median'] for r in runs),
                 peak_mb=statistics.median(r['peak_mb'] for r in runs)) for runs in per_job]


def main_table(args):
    shape = tuple(args.size)
    modes = ['infer'] + ([] if args.no_train else ['train'])
    jobs = [(m, mode, shape, args.batch, args.threads, args.warmup, args.repeats, args.device,
             args.amp) for m in args.models for mode in modes
            if mode == 'infer' or m not in INFERENCE_ONLY]
    # The machine is shared: take the better of a measurement before and one after the models.
    rate = matmul_rate(args.threads, args.device)
    results = {(r['model'], r['mode']): r
               for r in run_jobs(jobs, args.rounds, args.allocator)}
    rate = max(rate, matmul_rate(args.threads, args.device))
    print(f'\nBackbones at {args.batch}x3x{shape[0]}x{shape[1]}, {args.threads} threads, '
          f'{args.device}{" AMP" if args.amp else ""}, median of {args.repeats} after '
          f'{args.warmup} warm-up{rounds_note(args)}; allocator {args.allocator}; '
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
        inf = results[(m, 'infer')]
        flops = 2 * macs * args.batch
        line = (f"| {LABELS[m]} | {params / 1e6:.1f} | {macs / 1e9:.1f} | "
                f"{inf['median'] * 1e3:.0f} | {flops / inf['median'] / rate:.0%} | "
                f"{inf['peak_mb']:.0f} |")
        row = dict(model=m, params=params, macs=macs, infer=inf['median'],
                   infer_peak=inf['peak_mb'])
        if 'train' in modes and m in INFERENCE_ONLY:
            line += ' - | - |'
        elif 'train' in modes:
            tr = results[(m, 'train')]
            line += f" {tr['median'] * 1e3:.0f} | {tr['peak_mb']:.0f} |"
            row.update(train=tr['median'], train_peak=tr['peak_mb'])
        rows.append(row)
        print(line)
    compiled = [m for m in args.models if m.endswith(COMPILED)]
    if compiled:
        print('\n| compiled backbone | first inference call (s) | first training step (s) | '
              'inference vs eager | training step vs eager |')
        print('|---|---|---|---|---|')
        for m in compiled:
            eager = m.removesuffix(COMPILED)
            cells = [f"{results[(m, mode)]['first_call']:.1f}" if (m, mode) in results else '-'
                     for mode in ('infer', 'train')]
            ratios = [f"{results[(eager, mode)]['median'] / results[(m, mode)]['median']:.2f}x"
                      if (m, mode) in results and (eager, mode) in results else '-'
                      for mode in ('infer', 'train')]
            print(f'| {LABELS[m]} | ' + ' | '.join(cells + ratios) + ' |')
        print('(first call = compiling plus one run; vs eager > 1 means the compiled model is '
              'faster)')
    by = {r['model']: r for r in rows}
    if {'hire_s_fast', 'hire_s_plain'} <= set(by):
        f, p = by['hire_s_fast'], by['hire_s_plain']
        print(f"\nHireMLP-S fast vs plain: inference {p['infer'] / f['infer']:.2f}x faster"
              + (f", training step {p['train'] / f['train']:.2f}x faster, training peak memory "
                 f"{f['train_peak'] / max(p['train_peak'], 1e-9):.2f}x of plain"
                 if 'train' in f else ''))
    if {'hire_s_fused', 'hire_s_plain'} <= set(by):
        f, p, r = by['hire_s_fused'], by['hire_s_plain'], by.get('resnet50')
        print(f"HireMLP-S fast+fused vs plain: inference {p['infer'] / f['infer']:.2f}x faster"
              + (f"; vs ResNet-50: {r['infer'] / f['infer']:.2f}x" if r else ''))
    if {'hire_s_fast', 'resnet50'} <= set(by):
        f, r = by['hire_s_fast'], by['resnet50']
        print(f"HireMLP-S fast vs ResNet-50: inference {r['infer'] / f['infer']:.2f}x"
              + (f", training step {r['train'] / f['train']:.2f}x" if 'train' in f else '')
              + ' (>1 means HireMLP-S is faster)')
    if args.png:
        plot_bars(rows, args.png, shape)


def rounds_note(args):
    return f', median over {args.rounds} round-robin rounds' if args.rounds > 1 else ''


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
        ax.barh([LABELS[r['model']] for r in shown], [r[key] * scale for r in shown])
        ax.set_title(title)
        ax.invert_yaxis()
    fig.suptitle(f'Backbones at {shape[0]}x{shape[1]}')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f'chart: {path}')


def main_scaling(args):
    sizes = [(s, s) for s in args.scaling] + [(800, 1333)]
    jobs = [(m, 'infer', size, args.batch, args.threads, args.warmup, args.repeats, args.device,
             args.amp) for size in sizes for m in args.models]
    results = run_jobs(jobs, args.rounds, args.allocator)
    table = {(r['model'], i // len(args.models)): r for i, r in enumerate(results)}
    print(f'\nInference latency (ms) / peak memory (MB), batch {args.batch}, {args.threads} '
          f'threads, {args.device}, median of {args.repeats}{rounds_note(args)}; '
          f'allocator {args.allocator}\n')
    print('| input | ' + ' | '.join(LABELS[m] for m in args.models) + ' |')
    print('|---|' + '---|' * len(args.models))
    for i, size in enumerate(sizes):
        cells = [f"{table[(m, i)]['median'] * 1e3:.0f} / {table[(m, i)]['peak_mb']:.0f}"
                 for m in args.models]
        print(f'| {size[0]}x{size[1]} | ' + ' | '.join(cells) + ' |')
    if args.png:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        pixels = [h * w / 1e6 for h, w in sizes]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for m in args.models:
            a1.plot(pixels, [table[(m, i)]['median'] * 1e3 for i in range(len(sizes))], 'o-',
                    label=LABELS[m])
            a2.plot(pixels, [table[(m, i)]['peak_mb'] for i in range(len(sizes))], 'o-',
                    label=LABELS[m])
        a1.set(xlabel='megapixels', ylabel='inference latency (ms)')
        a2.set(xlabel='megapixels', ylabel='inference peak memory (MB)')
        a1.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f'chart: {args.png}')


def main_hire_modules(args):
    """Forward + backward of one Hire module per stage of HireMLP-S at the feature-map sizes of
    ``--size``, fast vs plain path, interleaved in this process (inputs channels-last for the
    fast path, as the backbone feeds it)."""
    import torch
    from mmhire import HireMLP
    from mmhire.models.layers.hire_module import HireModule
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = HireMLP(arch='s').eval()
    # each stage's second block (the first one with a shift) and the map size it sees
    blocks = [stage[min(1, len(stage) - 1)] for stage in backbone.network
              if isinstance(stage, torch.nn.Sequential)]
    sizes = []
    hooks = [b.register_forward_pre_hook(lambda m, inp: sizes.append(inp[0].shape[-2:]))
             for b in blocks]
    with torch.no_grad():
        backbone(torch.zeros(1, 3, *args.size))
    for hook in hooks:
        hook.remove()
    print(f'\nHire modules of HireMLP-S at {args.size[0]}x{args.size[1]} input, batch '
          f'{args.batch}, {args.threads} threads, forward + backward, median of {args.repeats} '
          f'after {args.warmup} warm-up, fast and plain interleaved\n')
    print('| stage | map | C | region | shift | fast (ms) | plain (ms) | plain / fast |')
    print('|---|---|---|---|---|---|---|---|')
    for stage, (block, (h, w)) in enumerate(zip(blocks, sizes)):
        attn = block.attn
        mods = {fast: HireModule(attn.embed_dims, attn.region_size, attn.shift, attn.pad_mode,
                                 fast=fast).train() for fast in (True, False)}
        mods[False].load_state_dict(mods[True].state_dict())
        x = torch.randn(args.batch, attn.embed_dims, h, w)
        inputs = {True: x.contiguous(memory_format=torch.channels_last), False: x}
        times = {True: [], False: []}
        for i in range(args.warmup + args.repeats):
            for fast in (True, False):
                xi = inputs[fast].detach().requires_grad_()
                t = time.perf_counter()
                out = mods[fast](xi)
                out.backward(torch.ones_like(out))
                if i >= args.warmup:
                    times[fast].append(time.perf_counter() - t)
        f, p = (statistics.median(times[k]) * 1e3 for k in (True, False))
        path = '' if h * w > attn.fast_min_positions else ' (plain path: small map)'
        print(f'| {stage + 1} | {h}x{w} | {attn.embed_dims} | {attn.region_size} | '
              f'{attn.shift} | {f:.1f}{path} | {p:.1f} | {p / f:.2f}x |')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--models', nargs='+', choices=MODELS + COMPILE_MODELS[1::2],
                        help=f'default: {" ".join(MODELS)} ({" ".join(COMPILE_MODELS)} with '
                        '--compile)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile rows (compile time, then steady state) next to eager')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--amp', action='store_true', help='autocast (fp16 on CUDA, bf16 on CPU)')
    parser.add_argument('--no-train', action='store_true', help='inference only')
    parser.add_argument('--scaling', type=int, nargs='+', metavar='SIDE',
                        help='resolution-scaling report over these square sizes (+ 800x1333)')
    parser.add_argument('--rounds', type=int, default=1,
                        help='run every model this many times, round-robin, and take medians')
    parser.add_argument('--allocator', choices=('system', 'retain'), default='system',
                        help="'retain': glibc keeps freed memory (no page-fault noise), see "
                        'RETAIN_ENV')
    parser.add_argument('--hire-modules', action='store_true',
                        help='time one Hire module per stage, fast vs plain path')
    parser.add_argument('--png', help='save a chart here')
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    if args.models is None:
        args.models = list(COMPILE_MODELS if args.compile else MODELS)
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            sys.exit('error: --device cuda but no CUDA GPU is visible')
    if args.hire_modules:
        main_hire_modules(args)
    elif args.scaling:
        main_scaling(args)
    else:
        main_table(args)


if __name__ == '__main__':
    main()
