"""HireMLP next to the backbones users would pick instead: flexibility and cost, one report.

Quick start:
    python tools/compare.py --small --backbones hire_t mlp_mixer   # a minute: the whole report
    python tools/compare.py --out work_dirs/compare                # every backbone, full size

Checks (``--checks``, both by default):
  flexibility  forward + backward of each backbone at each ``--sizes`` entry, alone and inside
               the same RetinaNet and Semantic FPN; each cell is "ok" or the error it raised
  cost         params, GMACs and CPU inference latency at ``--cost-size``, and latency, MACs
               and params against the resolution (``--scaling``; MLP-Mixer is rebuilt for each)

The report goes to a new folder (``--out``; an earlier report is never overwritten):
report.md, report.json (one entry per backbone: params_m, gmacs, latency_ms, sizes,
sizes_in, scaling) and PNG plots. ConvNeXt and MLP-Mixer come from mmpretrain (the peers
extra); where a package is missing, its cells say how to install it. Backbones: ``--list``.
"""
import argparse
import os
import sys
import warnings

warnings.filterwarnings('ignore')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from mmhire.analysis.compare import (CONTEXTS, DEFAULT_SCALING, DEFAULT_SIZES,  # noqa: E402
                                     build_report, check_out_dir, cost, default_out_dir,
                                     describe, flexibility, parse_size, size_key, write_report)
from mmhire.analysis.peers import PEERS, check_names  # noqa: E402
from mmhire.errors import MMHireError  # noqa: E402

HOSTS = {'retinanet': 'configs/retinanet_hire_t_fpn_1x_coco.py',
         'semantic_fpn': 'configs/fpn_hire_t_512x512_40k_ade20k.py'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--backbones', nargs='+', default=list(PEERS), metavar='NAME',
                        help=f'default: all ({" ".join(PEERS)})')
    parser.add_argument('--checks', nargs='+', default=['flexibility', 'cost'],
                        choices=['flexibility', 'cost'])
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
    import datetime
    meta = dict(date=datetime.date.today().isoformat(), cpu=cpu_description(),
                command='python tools/compare.py ' + ' '.join(argv if argv is not None
                                                              else sys.argv[1:]),
                small=args.small, threads=args.threads, cost_size=size_key(cost_size),
                torch=torch.__version__)
    paths = write_report(build_report(names, flex, costs, meta), out)
    print(f'report: {paths["report.md"]} (and report.json, plots) in {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
