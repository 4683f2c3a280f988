"""Evaluate a checkpoint on an MMDetection or MMSegmentation config's test set.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl | --out DIR] [--show-dir DIR]
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os.path as osp
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
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    return parse_runner_args(add_runner_args(parser), argv)


def main(argv=None):
    args = parse_args(argv)
    from mmhire.apis import PreflightError, check_checkpoint_file, check_datasets, load_config
    try:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        check_checkpoint_file(args.checkpoint)
        check_datasets(cfg, ('test',))
    except (PreflightError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    toolbox = cfg.default_scope
    cfg.load_from = args.checkpoint
    # The trained weights replace the backbone's ImageNet init: do not require that file.
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None

    if args.show or args.show_dir:
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            sys.exit('error: --show/--show-dir need a visualization hook in default_hooks')
        hooks.visualization.draw = True
        if args.show:
            hooks.visualization.show = True
            hooks.visualization.wait_time = args.wait_time
        if args.show_dir:
            cfg.visualizer.save_dir = args.show_dir
            if toolbox == 'mmdet':
                hooks.visualization.test_out_dir = osp.abspath(args.show_dir)

    if args.out and toolbox == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    elif args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            sys.exit('error: --out must be a .pkl or .pickle file for detection configs')
        if osp.exists(args.out):
            sys.exit(f'error: {args.out} exists; choose another --out file')

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmhire.errors import MMHireError
    try:
        runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
        if args.fuse:
            from mmhire.engine import FuseHireMLPHook
            runner.register_hook(FuseHireMLPHook())
        if args.out and toolbox == 'mmdet':
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        return runner.test()
    except MMHireError as e:  # a bad backbone argument, input or checkpoint: say which
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
