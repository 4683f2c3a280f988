"""Predict on an image or a folder of images and save pictures of the predictions.

    python tools/image_demo.py IMG_OR_DIR CONFIG CHECKPOINT --out-dir OUT [--score-thr 0.3]

Detection configs draw boxes and masks (MMDetection's DetLocalVisualizer); segmentation
configs draw the label overlay (MMSegmentation's SegLocalVisualizer). One PNG per image.
"""
import argparse
import os.path as osp
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
from mmengine.config import DictAction  # noqa: E402

from mmhire.apis import amp_inference_line, list_images, predict_and_draw  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('img', help='an image file or a folder of images')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', default='outputs', help='where the PNGs go')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--fuse', action='store_true',
                        help="fold HireMLP's BatchNorms into its convolutions (same results)")
    parser.add_argument('--amp', action='store_true',
                        help='backbone and neck in fp16 (CUDA) / bf16 (CPU) autocast')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (as given to tools/train.py)')
    args = parser.parse_args(argv)
    from mmhire.errors import MMHireError
    try:
        images = list_images(args.img)
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
        if args.amp and not args.device.startswith('cuda'):
            print(amp_inference_line(args.device))
        written = predict_and_draw(images, args.config, args.checkpoint, args.out_dir,
                                   args.device, args.score_thr, args.cfg_options, args.fuse,
                                   args.amp)
    except (FileNotFoundError, ValueError, MMHireError) as e:
        sys.exit(f'error: {e}')
    for f in written:
        print(f)


if __name__ == '__main__':
    main()
