"""HireMLP next to the backbones users would pick instead: flexibility and cost, one report.

Quick start:
    python tools/compare.py --small --backbones hire_t mlp_mixer   # a minute: the whole report
    python tools/compare.py --out work_dirs/compare                # every backbone, full size

Checks (``--checks``; flexibility and cost by default):
  flexibility  forward + backward of each backbone at each ``--sizes`` entry, alone and inside
               the same RetinaNet and Semantic FPN; each cell is "ok" or the error it raised
  cost         params, GMACs and CPU inference latency at ``--cost-size``, and latency, MACs
               and params against the resolution (``--scaling``; MLP-Mixer is rebuilt for each)
  train        accuracy under one recipe: each backbone trained from scratch in the same demo
               configs (``--tasks``: RetinaNet, Mask R-CNN, Semantic FPN), on the same demo
               data, schedule (``--epochs`` / ``--iters``) and ``--seeds``; the metric's mean
               and spread over the seeds, seconds per step and peak memory. Long: for example
               python tools/compare.py --checks train cost --backbones hire_t resnet50 \
                   --tasks retinanet semantic_fpn --epochs 2 --iters 200 --seeds 0 1

``--collect DIR ...`` adds the metrics of work dirs trained elsewhere (tools/train.py runs on
COCO or ADE20K, read from mmengine's logs; runs of one backbone and task with different seeds
are averaged), so a cluster's runs give the same table.

The report goes to a new folder (``--out``; an earlier report is never overwritten):
report.md, report.json (one entry per backbone: params_m, gmacs, latency_ms, sizes,
sizes_in, scaling, metrics), PNG plots, and the train check's work dirs under runs/.
ConvNeXt and MLP-Mixer are mmhire's (mmpretrain's names and weights; mmpretrain itself does not
import on the CPU stack). Backbones: ``--list``.
"""
import argparse
import os
import sys
import time
import warnings

warnings.filterwarnings('ignore')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mmhire.analysis.compare import (CONTEXTS, DEFAULT_SCALING, DEFAULT_SIZES,  # noqa: E402
                                     build_report, check_out_dir, cost, default_out_dir,
                                     describe, flexibility, parse_size, size_key, write_report)
from mmhire.analysis.peers import PEERS, check_names  # noqa: E402
from mmhire.analysis.training import (TASKS, check_tasks, collect, schedule_length,  # noqa: E402
                                      train_check)
from mmhire.errors import MMHireError  # noqa: E402

HOSTS = {'retinanet': 'configs/retinanet_hire_t_fpn_1x_coco.py',
         'semantic_fpn': 'configs/fpn_hire_t_512x512_40k_ade20k.py'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backbones', nargs='+', default=list(PEERS), metavar='NAME',
                        help=f'default: all ({" ".join(PEERS)})')
    parser.add_argument('--checks', nargs='*', default=['flexibility', 'cost'],
                        choices=['flexibility', 'cost', 'train'],
                        help='default: flexibility cost (none: only --collect)')
    parser.add_argument('--sizes', nargs='+', metavar='HxW',
                        default=[size_key(s) for s in DEFAULT_SIZES],
                        help='input sizes of the flexibility check (default: %(default)s)')
    parser.add_argument('--contexts', nargs='+', choices=CONTEXTS, default=list(CONTEXTS),
                        help='where the flexibility check runs each backbone')
    parser.add_argument('--cost-size', default='800x1216', metavar='HxW')
    parser.add_argument('--scaling', nargs='+', type=int, default=list(DEFAULT_SCALING),
                        metavar='SIDE', help='square sizes of the scaling rows')
    parser.add_argument('--small', action='store_true',
                        help='small variants of every backbone (a quick run of the whole tool)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    train = parser.add_argument_group('the train check')
    train.add_argument('--tasks', nargs='+', default=list(TASKS), metavar='TASK',
                       help=f'default: all ({" ".join(TASKS)})')
    train.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    train.add_argument('--epochs', type=int,
                       help="detection: epochs (default: the demo config's own, 9)")
    train.add_argument('--iters', type=int,
                       help="segmentation: iterations (default: the demo config's own, 800)")
    train.add_argument('--data-dir', default='data',
                       help='parent of demo_coco/ and demo_ade/ (made there when missing)')
    train.add_argument('--num-train', type=int, help='demo training images (default 300 / 200)')
    train.add_argument('--num-val', type=int, help='demo val images (default 50 / 40)')
    parser.add_argument('--collect', nargs='+', metavar='WORK_DIR',
                        help='also report the runs in these work dirs (or under them)')
    parser.add_argument('--out', help='a new folder for the report (default: '
                        'work_dirs/compare_<date>_<time>)')
    parser.add_argument('--list', action='store_true', help='list the known backbones')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        print(describe())
        return 0
    try:
        names = check_names(args.backbones)
        check_tasks(args.tasks)
        for option in ('epochs', 'iters', 'num_train', 'num_val'):
            value = getattr(args, option)
            if value is not None and value < 1:
                raise MMHireError(f"--{option.replace('_', '-')} must be at least 1")
        if not args.checks and not args.collect:
            raise MMHireError('nothing to do: give --checks, --collect or both')
        sizes = [parse_size(s) for s in args.sizes]
        cost_size = parse_size(args.cost_size)
        out = args.out or default_out_dir()
        check_out_dir(out)
    except MMHireError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    import torch
    from mmengine.config import Config

    from mmhire.env import cpu_description
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    flex = costs = None
    if 'flexibility' in args.checks:
        print(f'flexibility: {len(names)} backbone(s) x {len(sizes)} size(s) x '
              f'{len(args.contexts)} context(s)', flush=True)
        hosts = {c: Config.fromfile(os.path.join(ROOT, HOSTS[c]))
                 for c in args.contexts if c in HOSTS}
        flex = flexibility(names, sizes, args.contexts, args.small, hosts,
                           log=lambda line: print(line, flush=True))
    if 'cost' in args.checks:
        print(f'cost: {len(names)} backbone(s) at {size_key(cost_size)} and '
              f'{len(args.scaling)} square size(s)', flush=True)
        costs = cost(names, cost_size, args.scaling, args.small, args.warmup, args.repeats,
                     log=lambda line: print(line, flush=True))
    metrics = {}
    train_note = None
    if 'train' in args.checks:
        runs = sum(len(args.seeds) for n in names if PEERS[n].pyramid) * len(args.tasks)
        print(f'train: {len(names)} backbone(s) x {len(args.tasks)} task(s) x '
              f'{len(args.seeds)} seed(s), {runs} runs, one after the other', flush=True)
        start = time.time()
        try:
            metrics = train_check(names, args.tasks, args.seeds, out, args.data_dir,
                                  args.epochs, args.iters, args.small, args.num_train,
                                  args.num_val, args.threads,
                                  log=lambda line: print(line, flush=True))
        except MMHireError as e:  # the demo data refuses a folder made with other settings
            print(f'error: {e}', file=sys.stderr)
            return 1
        minutes = (time.time() - start) / 60
        schedule = ', '.join(
            f'{TASKS[t].label} {schedule_length(t, args.epochs, args.iters)} '
            + ('epochs' if TASKS[t].length == 'max_epochs' else 'iterations') for t in args.tasks)
        train_note = (
            'Each backbone trained from scratch in the demo configs of mmhire (the recipe was '
            f'tuned on HireMLP-T), on the self-made shapes sets in {args.data_dir}, seeds '
            f"{' '.join(map(str, args.seeds))}, {schedule}, on this CPU: {minutes:.0f} min for "
            f'{runs} runs. Seconds per step: the median of the logged iterations; peak memory: '
            "the training process's peak resident memory (CPU) or the largest CUDA memory.")
    if args.collect:
        try:
            collected = collect(args.collect, log=lambda line: print(line, flush=True))
        except MMHireError as e:
            print(f'error: {e}', file=sys.stderr)
            return 1
        for name, tasks in collected.items():
            for task, summary in tasks.items():
                key = task if task not in metrics.get(name, {}) else f'{task} (collected)'
                metrics.setdefault(name, {})[key] = summary
    import datetime
    meta = dict(date=datetime.date.today().isoformat(), cpu=cpu_description(),
                command='python tools/compare.py ' + ' '.join(argv if argv is not None
                                                              else sys.argv[1:]),
                small=args.small, threads=args.threads, cost_size=size_key(cost_size),
                torch=torch.__version__, train=train_note,
                collected=list(args.collect or []))
    paths = write_report(build_report(names if args.checks else [], flex, costs, meta,
                                      metrics), out)
    print(f'report: {paths["report.md"]} (and report.json, plots) in {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
