"""Params and FLOPs (MACs) of HireMLP backbones.

    python tools/get_flops.py --arch tiny small base large --shape 224 224
"""
import argparse

from mmhire.analysis import backbone_complexity

RELEASED = {'tiny': (18.04, 2.1), 'small': (33.11, 4.2), 'base': (58.23, 8.1), 'large': (95.72, 13.4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', nargs='+', default=list(RELEASED))
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224), metavar=('H', 'W'))
    args = parser.parse_args()
    print(f'| arch | backbone params (M) | + released head (M) | released (M) | '
          f'MACs at {args.shape[0]}x{args.shape[1]} (G) | released at 224 (G) |')
    print('|---|---|---|---|---|---|')
    for arch in args.arch:
        r = backbone_complexity(arch, args.shape)
        rel = RELEASED.get(arch.lower(), ('-', '-'))
        print(f"| {arch} | {r['params'] / 1e6:.2f} | {r['params_with_head'] / 1e6:.2f} | {rel[0]} | "
              f"{r['macs'] / 1e9:.2f} | {rel[1]} |")


if __name__ == '__main__':
    main()
