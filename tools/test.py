"""Evaluate a checkpoint on an MMDetection or MMSegmentation config's test set.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl | --out DIR] [--show-dir DIR]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import sys
import warnings

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
from mmhire.apis import add_runner_args, parse_runner_args  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation log')
    parser.add_argument('--out', help='detection: a .pkl file for the raw results; '
                                      'segmentation: a dir for the predicted label maps')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save pictures of the predictions in this dir')
    parser.add_argument('--fuse', action='store_true',
                        help='fold the HireMLP BatchNorms into its convolutions (HireMLP.fuse) '
                             'before testing: same results, faster inference')
    parser.add_argument('--amp', action='store_true',
                        help='backbone and neck in fp16 (GPU) / bf16 (CPU) autocast')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    return parse_runner_args(add_runner_args(parser), argv)


def main(argv=None):
    args = parse_args(argv)
    from mmhire.apis import (check_checkpoint_file, check_datasets, close_process_group,
                             enable_amp_testing, evaluate, load_config)
    from mmhire.errors import MMHireError
    try:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        check_checkpoint_file(args.checkpoint)
        check_datasets(cfg, ('test',))
        if args.amp:
            print(enable_amp_testing(cfg))
    except (MMHireError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    try:  # a bad option, backbone argument, input or checkpoint: say which
        metrics = evaluate(cfg, args.checkpoint, args.out, args.show, args.show_dir,
                           args.wait_time, args.fuse)
    except MMHireError as e:
        sys.exit(f'error: {e}')
    close_process_group()
    return metrics


if __name__ == '__main__':
    main()
