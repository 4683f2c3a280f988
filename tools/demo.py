"""The main job: train HireMLP-T models from scratch on the self-made shapes sets.

    python tools/demo.py                      # detection (what `bash tools/run_demo.sh` runs)
    python tools/demo.py --task seg           # segmentation
    python tools/demo.py --task all           # both, one after the other

For each task it

1. makes the demo data in data/demo_coco or data/demo_ade (reused when already there),
2. trains the demo config (detection: Mask R-CNN + HireMLP-T,
   configs/demo/maskrcnn_hire_t_fpn_demo.py; segmentation: Semantic FPN + HireMLP-T,
   configs/demo/fpn_hire_t_demo_ade.py) with tools/train.py in a new work dir
   (work_dirs/demo/<time>/<task>; nothing earlier is touched),
3. evaluates the final checkpoint (COCO bbox / segm mAP, or mIoU); for detection it also counts,
   per val shape, what the boxes at the drawing threshold do (found with the right class, a box
   of another class or a second box on it: what the picture shows, which mAP barely weighs),
4. draws the predictions on a few val images into <work dir>/demo_predictions.png,
5. prints the metrics and the time each step took.
"""
import argparse
import contextlib
import os
import os.path as osp
import subprocess
import sys
import time
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

TOOLS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(TOOLS)
CONFIGS = dict(det=osp.join('configs', 'demo', 'maskrcnn_hire_t_fpn_demo.py'),
               seg=osp.join('configs', 'demo', 'fpn_hire_t_demo_ade.py'))


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


@contextlib.contextmanager
def demo_data_hint(kind, args):
    """Add the remake command to the generator's refusal of its own folder made with other
    settings; a folder it did not write gets no such hint (``--overwrite`` never touches it)."""
    from mmhire.datasets.demo_data import MARKER
    from mmhire.errors import DemoDataError
    try:
        yield
    except DemoDataError as e:
        if not osp.isfile(osp.join(args.data_dir, f'demo_{kind}', MARKER)):
            raise
        raise DemoDataError(
            f'{e}.\nFrom tools/demo.py: remake it with `python -m mmhire.datasets.demo_data '
            f'--kind {kind} --out {args.data_dir} --overwrite` (a folder made by an older mmhire '
            f'holds older drawings), or give tools/demo.py another --data-dir') from None


def make_data(task, args):
    """The demo set of ``task``; returns its folder and the config options that point at it."""
    from mmhire.apis import schedule_options
    from mmhire.datasets.demo_data import make_ade, make_coco
    sizes = {k: v for k, v in (('num_train', args.num_train), ('num_val', args.num_val)) if v}
    if task == 'det':
        root = osp.join(args.data_dir, 'demo_coco')
        with demo_data_hint('coco', args):
            make_coco(root, seed=args.seed, **sizes)
        ann_val = f'{root}/annotations/instances_val.json'
        options = {f'{split}_dataloader.dataset.data_root': f'{root}/'
                   for split in ('train', 'val', 'test')}
        options.update({'val_evaluator.ann_file': ann_val, 'test_evaluator.ann_file': ann_val})
        if args.epochs:
            options.update(schedule_options(CONFIGS[task], 'max_epochs', args.epochs))
        val_images = osp.join(root, 'val')
    else:
        root = osp.join(args.data_dir, 'demo_ade')
        with demo_data_hint('ade', args):
            make_ade(root, seed=args.seed, **sizes)
        options = {f'{split}_dataloader.dataset.data_root': root
                   for split in ('train', 'val', 'test')}
        if args.iters:
            options.update(schedule_options(CONFIGS[task], 'max_iters', args.iters))
        val_images = osp.join(root, 'images', 'validation')
    options['train_cfg.val_begin'] = 10**6  # evaluated once, after training (not twice)
    options.update(args.cfg_options or {})
    return val_images, options


def free_name(path):
    """``path``, or ``stem_2.ext``, ``stem_3.ext``, ... if taken: nothing earlier is replaced."""
    stem, ext = osp.splitext(path)
    n = 1
    while osp.exists(path):
        n += 1
        path = f'{stem}_{n}{ext}'
    return path


def count_shapes(cfg, results_file, score_thr):
    """Per val shape, what the drawn boxes do (found, a wrong-class or second box on it)."""
    import pickle
    from mmhire.analysis import count_box_errors
    with open(results_file, 'rb') as f:
        results = pickle.load(f)
    dataset = cfg.test_dataloader.dataset
    return count_box_errors(results, osp.join(dataset.data_root, dataset.ann_file),
                            classes=dataset.metainfo['classes'], score_thr=score_thr)


def run_task(task, args, work_dir):
    """Train, evaluate and draw one task; returns (metrics, picture, timings)."""
    from mmhire.apis import evaluate, load_config, predict_and_draw
    timings = {}
    t = time.time()
    val_images, options = make_data(task, args)
    timings['data'] = time.time() - t

    config = CONFIGS[task]
    print(f'[demo] training {config} in {work_dir}', flush=True)
    t = time.time()
    subprocess.run([sys.executable, osp.join(TOOLS, 'train.py'), config, '--work-dir', work_dir,
                    '--cfg-options', *(f'{k}={v}' for k, v in options.items())], check=True)
    timings['train'] = time.time() - t
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()

    print(f'[demo] evaluating {checkpoint}', flush=True)
    t = time.time()
    cfg = load_config(config, options, osp.join(work_dir, 'test'))
    if task == 'det':
        results_file = free_name(osp.join(work_dir, 'val_predictions.pkl'))
        metrics = evaluate(cfg, checkpoint, out=results_file)
        metrics['shapes'] = count_shapes(cfg, results_file, args.score_thr)
    else:
        metrics = evaluate(cfg, checkpoint)
    timings['evaluate'] = time.time() - t

    t = time.time()
    images = sorted(os.listdir(val_images))[:args.num_draw]
    drawn = predict_and_draw([osp.join(val_images, i) for i in images], config, checkpoint,
                             osp.join(work_dir, 'predictions'), score_thr=args.score_thr,
                             cfg_options=options)
    picture = osp.join(work_dir, 'demo_predictions.png')
    grid(drawn, picture)
    timings['draw'] = time.time() - t
    return metrics, picture, timings


def report(task, metrics, picture, timings, checkpoint_dir):
    from mmhire.analysis import format_box_errors
    if task == 'det':
        print('\n[demo] Mask R-CNN + HireMLP-T, trained from scratch on the demo shapes set')
        for kind in ('bbox', 'segm'):
            print(f"[demo] {kind} mAP {metrics[f'coco/{kind}_mAP']:.3f}   "
                  f"mAP@0.5 {metrics[f'coco/{kind}_mAP_50']:.3f}   "
                  f"mAP@0.75 {metrics[f'coco/{kind}_mAP_75']:.3f}")
        print(f"[demo] val shapes {format_box_errors(metrics['shapes'])}")
    else:
        print('\n[demo] Semantic FPN + HireMLP-T, trained from scratch on the demo ADE set')
        print(f"[demo] mIoU {metrics['mIoU']:.2f}   mAcc {metrics['mAcc']:.2f}   "
              f"aAcc {metrics['aAcc']:.2f}")
    print(f'[demo] predictions drawn: {picture}')
    print('[demo] time: ' + ', '.join(f'{k} {v:.0f} s' for k, v in timings.items()) +
          f', total {sum(timings.values()) / 60:.1f} min')
    print(f'[demo] checkpoints: {checkpoint_dir}')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=('det', 'seg', 'all'), default='det')
    parser.add_argument('--data-dir', default='data', help='parent of demo_coco/, demo_ade/')
    parser.add_argument('--work-dir', help='default: work_dirs/demo/<date_time>')
    parser.add_argument('--epochs', type=int, help="detection: override the config's max_epochs")
    parser.add_argument('--iters', type=int, help="segmentation: override the config's max_iters")
    parser.add_argument('--num-train', type=int, help='demo images to train on (default: the '
                        "data set's own, 300 for detection, 200 for segmentation)")
    parser.add_argument('--num-val', type=int, help='demo images to evaluate on (default 50 / 40)')
    parser.add_argument('--num-draw', type=int, default=4, help='val images to draw')
    parser.add_argument('--score-thr', type=float, default=0.5, help='detection drawing threshold')
    parser.add_argument('--seed', type=int, default=0, help='demo data seed')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the demo config(s), as for tools/train.py')
    args = parser.parse_args(argv)
    for name in ('epochs', 'iters', 'num_train', 'num_val', 'num_draw'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.chdir(ROOT)
    from mmhire.errors import MMHireError
    work_dir = args.work_dir or osp.join('work_dirs', 'demo', time.strftime('%Y%m%d_%H%M%S'))
    tasks = ('det', 'seg') if args.task == 'all' else (args.task,)
    results = {}
    for task in tasks:
        task_dir = osp.join(work_dir, task)
        try:
            results[task] = run_task(task, args, task_dir)
        except MMHireError as e:  # the demo data refuses a folder, a bad option, ...
            sys.exit(f'error: {e}')
        except subprocess.CalledProcessError:
            sys.exit(f'error: training the {task} demo failed (its message is above)')
    for task, (metrics, picture, timings) in results.items():
        report(task, metrics, picture, timings, osp.join(work_dir, task))
    return {task: r[0] for task, r in results.items()}


if __name__ == '__main__':
    main()
