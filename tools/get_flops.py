"""Params and FLOPs (MACs) of HireMLP backbones, or of a whole detector / segmentor config.

    python tools/get_flops.py --arch tiny small base large --shape 224 224
    python tools/get_flops.py --config configs/maskrcnn_hire_s_fpn_1x_coco.py --shape 800 1333
"""
import argparse
import os.path as osp
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
from mmhire.analysis import RELEASED, backbone_complexity, model_complexity  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', default=list(RELEASED))
    parser.add_argument('--config', nargs='+', help='whole-model mode: one or more configs')
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input size (default 224 224 for backbones, 800 1333 for configs)')
    args = parser.parse_args()
    if args.config:
        from mmengine.config import Config
        shape = args.shape or (800, 1333)
        print(f'| config | params (M) | GMACs at {shape[0]}x{shape[1]} |')
        print('|---|---|---|')
        for path in args.config:
            r = model_complexity(Config.fromfile(path), shape)
            print(f"| {osp.splitext(osp.basename(path))[0]} | {r['params'] / 1e6:.2f} | "
                  f"{r['macs'] / 1e9:.2f} |")
        return
    args.shape = args.shape or (224, 224)
    print(f'| arch | backbone params (M) | + released head (M) | released (M) | '
          f'MACs at {args.shape[0]}x{args.shape[1]} (G) | released at 224 (G) |')
    print('|---|---|---|---|---|---|')
    for arch in args.arch:
        r = backbone_complexity(arch, args.shape)
        rel = RELEASED.get(arch.lower())
        rel_params, rel_macs = (f"{rel['params'] / 1e6:.2f}", f"{rel['macs'] / 1e9:.1f}") \
            if rel else ('-', '-')
        print(f"| {arch} | {r['params'] / 1e6:.2f} | {r['params_with_head'] / 1e6:.2f} | "
              f"{rel_params} | {r['macs'] / 1e9:.2f} | {rel_macs} |")


if __name__ == '__main__':
    main()
