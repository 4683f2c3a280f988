"""What the tools share: config loading, preflight checks, --amp, evaluation and drawing."""
from .amp import (amp_inference_line, check_optim_wrapper, enable_amp_testing,
                  enable_amp_training)
from .config import (add_runner_args, close_process_group, load_config, parse_runner_args,
                     schedule_options, toolbox_of)
from .evaluate import evaluate
from .inference import list_images, predict_and_draw, read_rgb
from .preflight import (PreflightError, check_checkpoint_file, check_datasets, check_pretrained,
                        check_work_dir_is_free)

__all__ = ['PreflightError', 'amp_inference_line', 'check_optim_wrapper', 'enable_amp_testing',
           'enable_amp_training',
           'add_runner_args', 'close_process_group', 'parse_runner_args', 'check_checkpoint_file',
           'check_datasets', 'check_pretrained', 'check_work_dir_is_free', 'evaluate',
           'list_images', 'load_config', 'predict_and_draw', 'read_rgb', 'schedule_options',
           'toolbox_of']
