"""What tools/train.py, tools/test.py and the demo share: config loading and preflight checks."""
from .config import add_runner_args, load_config, parse_runner_args, toolbox_of
from .preflight import (PreflightError, check_checkpoint_file, check_datasets, check_pretrained,
                        check_work_dir_is_free)

__all__ = ['PreflightError', 'add_runner_args', 'parse_runner_args', 'check_checkpoint_file',
           'check_datasets', 'check_pretrained', 'check_work_dir_is_free', 'load_config',
           'toolbox_of']
