"""The main job: train Mask R-CNN + HireMLP-T from scratch on the self-made shapes set.

    python tools/demo.py                      # (what `bash tools/run_demo.sh` runs)

1. makes the COCO-format demo data in data/demo_coco (reused when already there),
2. trains configs/demo/maskrcnn_hire_t_fpn_demo.py with tools/train.py in a new work dir
   (work_dirs/demo/<time>; nothing earlier is touched),
3. evaluates the final checkpoint with the COCO metric through tools/test.py,
4. draws the predictions on a few val images into <work dir>/demo_predictions.png,
5. prints the final bbox and segm mAP and the time each step took.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

TOOLS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(TOOLS)


def grid(paths, out_file, cols=2):
    import cv2
    import numpy as np
    imgs = [cv2.imread(p) for p in paths]
    h = max(i.shape[0] for i in imgs)
    w = max(i.shape[1] for i in imgs)
    tiles = [cv2.copyMakeBorder(i, 0, h - i.shape[0], 0, w - i.shape[1], cv2.BORDER_CONSTANT,
                                value=(255, 255, 255)) for i in imgs]
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[r:r + cols], axis=1) for r in range(0, len(tiles), cols)]
    cv2.imwrite(out_file, np.concatenate(rows, axis=0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config',
                        default=osp.join('configs', 'demo', 'maskrcnn_hire_t_fpn_demo.py'))
    parser.add_argument('--data-dir', default='data', help='parent of demo_coco/')
    parser.add_argument('--work-dir', help='default: work_dirs/demo/<date_time>')
    parser.add_argument('--epochs', type=int, help="override the config's max_epochs")
    parser.add_argument('--num-draw', type=int, default=4, help='val images to draw')
    parser.add_argument('--score-thr', type=float, default=0.5, help='drawing threshold')
    parser.add_argument('--seed', type=int, default=0, help='demo data seed')
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    t0 = time.time()
    timings = {}

    from mmhire.datasets.demo_data import DemoDataError, make_coco
    data_root = osp.join(args.data_dir, 'demo_coco')
    try:
        make_coco(data_root, seed=args.seed)
    except DemoDataError as e:
        sys.exit(f'error: {e}')
    timings['data'] = time.time() - t0

    work_dir = args.work_dir or osp.join('work_dirs', 'demo', time.strftime('%Y%m%d_%H%M%S'))
    ann_val = f'{data_root}/annotations/instances_val.json'
    options = {'train_dataloader.dataset.data_root': f'{data_root}/',
               'val_dataloader.dataset.data_root': f'{data_root}/',
               'test_dataloader.dataset.data_root': f'{data_root}/',
               'val_evaluator.ann_file': ann_val, 'test_evaluator.ann_file': ann_val,
               'train_cfg.val_interval': 1000}  # evaluated once below
    if args.epochs:
        options['train_cfg.max_epochs'] = args.epochs
    print(f'[demo] training {args.config} in {work_dir}', flush=True)
    t = time.time()
    subprocess.run([sys.executable, osp.join(TOOLS, 'train.py'), args.config,
                    '--work-dir', work_dir, '--cfg-options',
                    *(f'{k}={v}' for k, v in options.items())], check=True)
    timings['train'] = time.time() - t
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()

    print(f'[demo] evaluating {checkpoint}', flush=True)
    t = time.time()
    from mmhire.apis import evaluate, load_config, predict_and_draw
    metrics = evaluate(load_config(args.config, options, osp.join(work_dir, 'test')), checkpoint)
    timings['evaluate'] = time.time() - t

    t = time.time()
    val_dir = osp.join(data_root, 'val')
    images = sorted(os.listdir(val_dir))[:args.num_draw]
    drawn = predict_and_draw(
        [osp.join(val_dir, i) for i in images], args.config, checkpoint,
        osp.join(work_dir, 'predictions'), score_thr=args.score_thr)
    picture = osp.join(work_dir, 'demo_predictions.png')
    grid(drawn, picture)
    timings['draw'] = time.time() - t

    total = time.time() - t0
    print('\n[demo] Mask R-CNN + HireMLP-T, trained from scratch on the demo shapes set')
    for kind in ('bbox', 'segm'):
        print(f"[demo] {kind} mAP {metrics[f'coco/{kind}_mAP']:.3f}   "
              f"mAP@0.5 {metrics[f'coco/{kind}_mAP_50']:.3f}   "
              f"mAP@0.75 {metrics[f'coco/{kind}_mAP_75']:.3f}")
    print(f'[demo] predictions drawn: {picture}')
    print('[demo] time: ' + ', '.join(f'{k} {v:.0f} s' for k, v in timings.items()) +
          f', total {total / 60:.1f} min')
    print(f'[demo] checkpoint: {checkpoint}')
    return metrics


if __name__ == '__main__':
    main()
