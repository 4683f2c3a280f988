"""Export HireMLP models to ONNX, run the file in onnxruntime next to PyTorch, print the largest
differences and the ONNX ops the graph uses.

    # the backbone alone (random weights, or --checkpoint a released / trained file), both exporters
    python tools/deploy.py backbone --arch small --checkpoint checkpoints/hire_mlp_small.pth \\
        --fuse --out-dir work_dirs/deploy
    # a whole detector or segmentor through mmdeploy (onnxruntime backend)
    python tools/deploy.py model configs/retinanet_hire_t_fpn_1x_coco.py CHECKPOINT \\
        --out-dir work_dirs/deploy_retinanet

Files are recorded once at ``--export-shape`` with dynamic batch, height and width, and checked
at every ``--check-shape``. Needs the deploy extra: ``pip install -e '.[deploy]'``.
"""
import argparse
import os
import os.path as osp
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def shape_arg(text):
    """'2x3x224x320' -> (2, 3, 224, 320)."""
    try:
        shape = tuple(int(v) for v in text.lower().split('x'))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a shape like 2x3x224x320 (BxCxHxW)')
    return shape


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='what', required=True)

    bb = sub.add_parser('backbone', help='the HireMLP backbone alone')
    bb.add_argument('--arch', default='tiny', help='tiny, small, base or large')
    bb.add_argument('--checkpoint', help='weights to load (released or mmengine checkpoint); '
                                         'default: random initialisation')
    bb.add_argument('--pad-mode', default='circular', help='HireMLP pad_mode')
    bb.add_argument('--fuse', action='store_true', help='export HireMLP.fuse() (BN folded)')
    bb.add_argument('--exporter', choices=['torchscript', 'dynamo', 'both'], default='both')
    bb.add_argument('--export-shape', type=shape_arg, default=(2, 3, 224, 320),
                    help='input shape the graph is recorded at (default 2x3x224x320)')
    bb.add_argument('--check-shape', type=shape_arg, nargs='+',
                    default=[(2, 3, 224, 320), (1, 3, 800, 1216), (1, 3, 333, 517),
                             (2, 3, 61, 45), (1, 3, 16, 16)],
                    help='input shapes to compare onnxruntime with PyTorch at')
    bb.add_argument('--out-dir', default='work_dirs/deploy')

    md = sub.add_parser('model', help='a whole detector / segmentor through mmdeploy')
    md.add_argument('config', help='an mmhire (mmdet or mmseg) config')
    md.add_argument('checkpoint', help='trained weights of that config')
    md.add_argument('--out-dir', required=True, help='a new or empty folder for the ONNX file')
    md.add_argument('--image', help='image to export with and compare on (default: a synthetic '
                                    'one drawn by the demo generator)')
    # 320x512 resizes to 800x1280 under mmdet's 1333x800 test scale: no padding, so the
    # exported graph's box clipping (at the padded input) matches PyTorch's (at the image)
    md.add_argument('--shape', type=int, nargs=2, default=(320, 512), metavar=('H', 'W'),
                    help='size of the synthetic image (default 320 512)')
    md.add_argument('--check-shape', type=int, nargs=2, action='append', metavar=('H', 'W'),
                    help='also run synthetic images of these sizes (repeatable)')
    return parser.parse_args(argv)


def export_backbone(args):
    import torch

    from mmhire import HireMLP
    from mmhire.checkpoint import load_pretrained
    from mmhire.deploy import compare_onnxruntime, export_onnx, onnx_op_types
    from mmhire.deploy.onnx_export import median_latency_ms, onnxruntime_latency_ms

    model = HireMLP(arch=args.arch, pad_mode=args.pad_mode)
    if args.checkpoint:
        load_pretrained(model, args.checkpoint)
    else:
        model.init_weights()
    model.eval()
    if args.fuse:
        model.fuse()
    name = f'hire_{args.arch}{"_fused" if args.fuse else ""}'
    os.makedirs(args.out_dir, exist_ok=True)
    exporters = ['torchscript', 'dynamo'] if args.exporter == 'both' else [args.exporter]
    torch.manual_seed(0)
    inputs = [torch.randn(*shape) for shape in args.check_shape]
    print(f'HireMLP-{args.arch}{" (fused)" if args.fuse else ""}, '
          f'{"weights " + args.checkpoint if args.checkpoint else "random weights"}, '
          f'recorded at {"x".join(map(str, args.export_shape))}; dynamic batch, height, width\n')
    print('| exporter | file | export (s) | input | max abs diff | max rel diff | '
          'onnxruntime (ms) | PyTorch (ms) |')
    print('|---|---|---|---|---|---|---|---|')
    op_lists = {}
    for exporter in exporters:
        path = osp.join(args.out_dir, f'{name}_{exporter}.onnx')
        start = time.perf_counter()
        export_onnx(model, torch.randn(*args.export_shape), path, exporter)
        seconds = time.perf_counter() - start
        rows = compare_onnxruntime(model, path, inputs)
        for x, (shape, max_abs, max_rel) in zip(inputs, rows):
            # median of 3 after a warm-up, in this process; the benchmark
            # (tools/benchmark.py --onnxruntime) gives fresh processes and more repeats
            ort_ms = onnxruntime_latency_ms(path, x)
            with torch.no_grad():
                torch_ms = median_latency_ms(lambda: model(x))
            print(f'| {exporter} | {path} | {seconds:.1f} | {"x".join(map(str, shape))} | '
                  f'{max_abs:.2e} | {max_rel:.2e} | {ort_ms:.1f} | {torch_ms:.1f} |')
        op_lists[exporter] = onnx_op_types(path)
    print()
    for exporter, ops in op_lists.items():
        print(f'{exporter} graph ops ({sum(ops.values())} nodes): '
              + ', '.join(f'{op} {n}' for op, n in sorted(ops.items())))


def export_model(args):
    from mmhire.deploy.mmdeploy_export import deploy_model, real_differences
    from mmhire.errors import DeployError
    result = deploy_model(args.config, args.checkpoint, args.out_dir, image=args.image,
                          shape=tuple(args.shape),
                          check_shapes=[tuple(s) for s in args.check_shape or []])
    differences = real_differences(result)
    if differences:  # never leave a silently wrong file behind a zero exit code
        raise DeployError(f"{result['onnx']} does not give PyTorch's results (beyond "
                          'near-ties):\n' + '\n'.join(differences))


def main(argv=None):
    args = parse_args(argv)
    from mmhire.errors import MMHireError
    try:
        if args.what == 'backbone':
            export_backbone(args)
        else:
            export_model(args)
    except (MMHireError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
