"""Evaluating a checkpoint on a config's test set (tools/test.py, tools/demo.py)."""
import os.path as osp

from mmhire.errors import PreflightError


def evaluate(cfg, checkpoint, out=None, show=False, show_dir=None, wait_time=2., fuse=False):
    """Run ``cfg``'s test loop on ``checkpoint`` and return its metrics.

    Args:
        cfg (Config): A config from :func:`~mmhire.apis.load_config`.
        checkpoint (str): The trained weights (they replace the backbone's ImageNet init).
        out (str, optional): Detection: a ``.pkl`` file for the raw results (must not exist);
            segmentation: a folder for the predicted label maps.
        show (bool): Show the predictions in a window, ``wait_time`` seconds each.
        show_dir (str, optional): Save pictures of the predictions here.
        fuse (bool): Fold the HireMLP BatchNorms into its convolutions first.
    """
    toolbox = cfg.default_scope
    cfg.load_from = checkpoint
    # The trained weights replace the backbone's ImageNet init: do not require that file.
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None

    if show or show_dir:
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            raise PreflightError('--show/--show-dir need a visualization hook in default_hooks')
        hooks.visualization.draw = True
        if show:
            hooks.visualization.show = True
            hooks.visualization.wait_time = wait_time
        if show_dir:
            cfg.visualizer.save_dir = show_dir
            if toolbox == 'mmdet':
                hooks.visualization.test_out_dir = osp.abspath(show_dir)

    if out and toolbox == 'mmseg':
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    elif out:
        if not out.endswith(('.pkl', '.pickle')):
            raise PreflightError('--out must be a .pkl or .pickle file for detection configs')
        if osp.exists(out):
            raise PreflightError(f'{out} exists; choose another --out file')

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if fuse:
        from mmhire.engine import FuseHireMLPHook
        runner.register_hook(FuseHireMLPHook())
    if out and toolbox == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    return runner.test()
