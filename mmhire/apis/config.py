"""Loading a config the way MMDetection's and MMSegmentation's tools do, for either toolbox."""
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (re-exported for the tools)

TOOLBOXES = ('mmdet', 'mmseg')


def add_runner_args(parser):
    """The arguments tools/train.py and tools/test.py share, as MMDetection spells them."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.init_cfg=None')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (dist_train.sh / dist_test.sh: pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_runner_args(parser, argv=None):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def toolbox_of(cfg) -> str:
    """``'mmdet'`` or ``'mmseg'``, from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in TOOLBOXES:
        raise ValueError(f"config's default_scope is {scope!r}; mmhire's tools run "
                         f"MMDetection ('mmdet') and MMSegmentation ('mmseg') configs")
    return scope


def load_config(path, cfg_options=None, work_dir=None, launcher='none'):
    """Read a config, apply ``--cfg-options``, set the work dir and the distributed backend."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path!r}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    toolbox_of(cfg)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    if not torch.cuda.is_available():
        # The bases ask for NCCL, which needs GPUs: multi-process CPU runs use gloo.
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
        if launcher == 'pytorch':
            init_cpu_process_group(cfg)
    return cfg


def init_cpu_process_group(cfg):
    """Start torchrun's process group on gloo, for machines without GPUs.

    mmengine 0.10's ``pytorch`` launcher always calls ``torch.cuda.set_device``, which a CPU-only
    torch cannot do. The Runner skips its own initialisation when a process group exists, so
    creating it here lets the same ``dist_train.sh`` work on CPUs; DDP then gets no device ids.
    """
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def close_process_group():
    """End a finished multi-process run in step, then take its process group down.

    Left to interpreter exit, gloo's threads are torn down while the other process may still be
    talking, and CPU runs ended with ``terminate called without an active exception``
    (SIGABRT) after they had trained and saved: 3 of 14 ``dist_train.sh`` runs here, 6 of 20
    bare gloo all-reduce scripts. A barrier brings every process here first and destroying the
    group then closes it in order (0 of 30 and 0 of 20). DDP's reducer keeps a reference to the
    group, so the caller drops its runner (and with it the wrapped model) before calling this;
    the collection below frees what only cycles still hold. Call it only after a successful
    run: after a failure the other processes may never arrive at the barrier.
    """
    import gc

    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def schedule_options(config, key, length):
    """Config options (as ``--cfg-options`` takes them) that make ``config`` (a path or a
    loaded config) train for ``length`` epochs or iterations.

    The learning-rate schedules and the checkpoint interval that end where the training does
    (``train_cfg[key]``) end at ``length`` too, so that a longer run still anneals and a shorter
    one still ends at a low rate and saves its checkpoint.
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    old = cfg.train_cfg[key]
    options = {f'train_cfg.{key}': length}
    if cfg.train_cfg.get('val_interval') == old:
        options['train_cfg.val_interval'] = length
    if cfg.default_hooks.get('checkpoint', {}).get('interval') == old:
        options['default_hooks.checkpoint.interval'] = length
    by_epoch = key == 'max_epochs'
    for i, scheduler in enumerate(cfg.get('param_scheduler') or []):
        if scheduler.get('by_epoch', True) != by_epoch:  # a warm-up counted in iterations
            continue
        for name in ('end', 'T_max'):
            if scheduler.get(name) == old:
                options[f'param_scheduler.{i}.{name}'] = length
    return options
