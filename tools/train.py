"""Train an MMDetection or MMSegmentation config (the config's default_scope says which).

    python tools/train.py configs/maskrcnn_hire_s_fpn_1x_coco.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume        # continue the latest
    bash tools/dist_train.sh CONFIG 8                                       # 8 processes
"""
import argparse
import os
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
from mmhire.apis import add_runner_args, parse_runner_args  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 on GPUs, bf16 backbone and neck on CPUs '
                             '(AutocastOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the learning rate by your batch size / the config's "
                             'auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or without a value from the '
                             'latest checkpoint in the work dir')
    return parse_runner_args(add_runner_args(parser), argv)


def main(argv=None):
    args = parse_args(argv)
    from mmhire.apis import (check_datasets, check_optim_wrapper, check_pretrained,
                             check_work_dir_is_free, close_process_group, enable_amp_training,
                             load_config)
    from mmhire.errors import MMHireError
    try:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        check_datasets(cfg, ('train', 'val') if cfg.get('val_cfg') else ('train',))
        if args.resume is None:
            check_pretrained(cfg)
            if int(os.environ.get('RANK', '0')) == 0:
                check_work_dir_is_free(cfg.work_dir)
        if args.amp:
            print(enable_amp_training(cfg))
        check_optim_wrapper(cfg)
    except (MMHireError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            sys.exit('error: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not os.path.isfile(args.resume):
            sys.exit(f'error: --resume checkpoint not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    try:
        runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
        runner.train()
    except MMHireError as e:  # a bad backbone argument, input or checkpoint: say which
        sys.exit(f'error: {e}')
    del runner  # its DDP model holds the process group, which must close first
    close_process_group()


if __name__ == '__main__':
    main()
