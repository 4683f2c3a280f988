"""Fusing HireMLP backbones for testing, after the checkpoint is loaded."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ...registry import HOOKS


@HOOKS.register_module()
class FuseHireMLPHook(Hook):
    """Call :meth:`HireMLP.fuse` on every HireMLP in the model at ``before_test``.

    ``Runner.test`` loads the checkpoint before its test loop starts, so the folded weights are
    the loaded ones. Training and validation are not affected (the hook acts in ``test`` only).
    ``tools/test.py --fuse`` adds it; in a config: ``custom_hooks=[dict(type='FuseHireMLPHook')]``.
    """

    def before_test(self, runner):
        from mmhire.models import fuse_hire_mlps
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        print_log(f'FuseHireMLPHook: fused {fuse_hire_mlps(model)} HireMLP backbone(s) for '
                  'inference', logger='current')
