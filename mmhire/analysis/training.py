"""Accuracy under one recipe: the comparison's ``train`` check, and metrics read from work dirs.

:func:`train_check` trains every backbone with the same detector or segmentor, demo data,
schedule and seeds (the demo configs of :data:`TASKS`, only the backbone and the neck's input
widths swapped), each run a ``tools/train.py`` process in its own work dir. The metrics, the
seconds per training step and the peak memory of each run are then read back from the work
dir by :func:`collect_work_dir`, the same reader that collects runs trained elsewhere
(``tools/compare.py --collect``: COCO or ADE20K on a cluster), so both kinds of run enter the
report the same way.

Peak memory: mmengine logs ``memory`` (the largest CUDA allocation, MB) on GPUs; on a CPU the
log has none, and a run started here records its process's peak resident memory instead
(``peak_rss_mb``, from the kernel's accounting of the finished process).
"""
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from mmhire.errors import CompareError

from .peers import NO_PYRAMID, PEERS, backbone_cfg, check_known, check_names, out_channels

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class Task(NamedTuple):
    label: str
    config: str  # the demo config (HireMLP-T) whose recipe every backbone trains with
    data: str  # 'coco' or 'ade': the demo set it reads
    metrics: Tuple[str, ...]  # what the report shows; the first is the headline
    length: str  # 'max_epochs' or 'max_iters'


TASKS = {
    'retinanet': Task('RetinaNet', 'configs/demo/retinanet_hire_t_fpn_demo.py', 'coco',
                      ('coco/bbox_mAP', 'coco/bbox_mAP_50'), 'max_epochs'),
    'maskrcnn': Task('Mask R-CNN', 'configs/demo/maskrcnn_hire_t_fpn_demo.py', 'coco',
                     ('coco/bbox_mAP', 'coco/segm_mAP'), 'max_epochs'),
    'semantic_fpn': Task('Semantic FPN', 'configs/demo/fpn_hire_t_demo_ade.py', 'ade',
                         ('mIoU', 'mAcc'), 'max_iters'),
}

# What train_run adds to a work dir: its wall time and peak resident memory (mmengine's logs
# have no CPU memory)
RUN_FILE = 'mmhire_train_run.json'
# What a log line holds besides metrics (train lines also hold losses, learning rates)
_NOT_METRICS = {'step', 'iter', 'epoch', 'time', 'data_time', 'memory', 'lr', 'base_lr'}


def check_tasks(tasks):
    return check_known(tasks, TASKS, 'task')


# -- the configs ---------------------------------------------------------------------------

def schedule_length(task: str, epochs: Optional[int] = None, iters: Optional[int] = None):
    """The epochs (detection) or iterations (segmentation) a run of ``task`` trains for."""
    from mmengine.config import Config
    spec = TASKS[task]
    length = epochs if spec.length == 'max_epochs' else iters
    return length or Config.fromfile(osp.join(ROOT, spec.config)).train_cfg[spec.length]


def run_config(task: str, name: str, seed: int, data_dir: str, length: Optional[int] = None,
               small: bool = False):
    """The demo config of ``task`` with peer ``name`` as its backbone, trained from scratch
    with ``seed`` on the demo data under ``data_dir``, for ``length`` epochs (detection) or
    iterations (segmentation; default: the config's own). Returns an mmengine Config.

    A HireMLP peer keeps the demo backbone's other settings (its drop path); every other
    peer comes with its toolbox's defaults, as a user would write it."""
    from mmengine.config import Config

    from mmhire.apis import schedule_options
    spec = TASKS[task]
    cfg = Config.fromfile(osp.join(ROOT, spec.config))
    options = {}
    if length:
        options.update(schedule_options(cfg, spec.length, length))
    root = osp.abspath(osp.join(data_dir, f'demo_{spec.data}'))
    if spec.data == 'coco':
        root += '/'  # mmdet joins data_root and the annotation file as strings
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = root
    if spec.data == 'coco':
        ann = root + 'annotations/instances_val.json'
        options.update({'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann})
    options['randomness.seed'] = seed
    cfg.merge_from_dict(options)
    scope = 'mmdet' if spec.data == 'coco' else 'mmseg'
    backbone = backbone_cfg(name, small, scope=scope)
    if backbone['type'].endswith('ResNet'):
        # mmdet's ResNet keeps its BatchNorms frozen by default (norm_eval=True), right for
        # ImageNet weights; trained from scratch they must learn like every other backbone's
        backbone['norm_eval'] = False
    if backbone['type'] == cfg.model.backbone.type:
        backbone = dict(cfg.model.backbone.to_dict(), **backbone)
    cfg.model.backbone = backbone
    cfg.model.neck.in_channels = list(out_channels(name, small))
    imports = list(cfg.get('custom_imports', {}).get('imports', ['mmhire']))
    toolbox = PEERS[name].toolbox
    if toolbox == 'mmdet' and 'mmdet.models' not in imports:
        imports.append('mmdet.models')  # the backbone's registry, in mmseg too
    cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)
    return cfg


# -- running -------------------------------------------------------------------------------

def _error_line(log_file: str, returncode: int) -> str:
    """The last line of a failed run's output that names an error, else its exit code."""
    try:
        with open(log_file, errors='replace') as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        lines = []
    for line in reversed(lines):
        head = line.split(':', 1)[0]
        if head.endswith(('Error', 'Exception')) or line.startswith('error:'):
            return line[:300]
    return f'tools/train.py exited with code {returncode}'


def train_run(config_file: str, work_dir: str, threads: Optional[int] = None) -> dict:
    """``tools/train.py config_file --work-dir work_dir`` in a new process, its output in
    ``work_dir/train_output.log``. Returns ``{'seconds', 'peak_rss_mb'}`` and, when it failed,
    ``error`` (the error line)."""
    os.makedirs(work_dir, exist_ok=True)
    log_file = osp.join(work_dir, 'train_output.log')
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    start = time.perf_counter()
    with open(log_file, 'w') as log:
        proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                                 config_file, '--work-dir', work_dir],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        # wait4: this process's own resource use (ru_maxrss, in KB on Linux), not the sum
        # over every child so far that getrusage(RUSAGE_CHILDREN) would give
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    result = dict(seconds=time.perf_counter() - start, peak_rss_mb=usage.ru_maxrss / 1024)
    if proc.returncode != 0:
        result['error'] = _error_line(log_file, proc.returncode)
    with open(osp.join(work_dir, RUN_FILE), 'w') as f:  # for --collect, later
        json.dump(result, f)
    return result


def train_check(names: Sequence[str], tasks: Sequence[str], seeds: Sequence[int], out_dir: str,
                data_dir: str = 'data', epochs: Optional[int] = None,
                iters: Optional[int] = None, small: bool = False, num_train=None,
                num_val=None, threads=None, log=print) -> Dict[str, Dict[str, dict]]:
    """Train each backbone on each task with each seed, one run after the other (they would
    compete for the cores), in ``out_dir/runs/<task>/<backbone>_seed<seed>``. Returns
    ``{backbone: {task: summary}}`` (:func:`summarize`); a backbone that cannot train on a
    task (no feature pyramid, a crash) holds ``error`` there instead."""
    from mmhire.datasets.demo_data import make_ade, make_coco
    names, tasks = check_names(names), check_tasks(tasks)
    sizes = {k: v for k, v in (('num_train', num_train), ('num_val', num_val)) if v}
    for kind in sorted({TASKS[t].data for t in tasks}):
        (make_coco if kind == 'coco' else make_ade)(osp.join(data_dir, f'demo_{kind}'),
                                                    **sizes)
    total = sum(len(seeds) for n in names for _ in tasks if PEERS[n].pyramid)
    done = 0
    result = {name: {} for name in names}
    for task in tasks:
        length = epochs if TASKS[task].length == 'max_epochs' else iters
        for name in names:
            if not PEERS[name].pyramid:
                result[name][task] = dict(error=NO_PYRAMID)
                continue
            runs = []
            for seed in seeds:
                done += 1
                work_dir = osp.join(out_dir, 'runs', task, f'{name}_seed{seed}')
                cfg = run_config(task, name, seed, data_dir, length, small)
                os.makedirs(work_dir, exist_ok=True)
                config_file = osp.join(work_dir, f'{task}_{name}_seed{seed}.py')
                cfg.dump(config_file)
                log(f'  train [{done}/{total}] {TASKS[task].label} + {PEERS[name].label}, '
                    f'seed {seed}: {work_dir}')
                ran = train_run(config_file, work_dir, threads)
                if 'error' in ran:
                    log(f"    failed after {ran['seconds']:.0f} s: {ran['error']}")
                    runs.append(dict(ran, seed=seed, work_dir=work_dir))
                    continue
                try:
                    run = dict(collect_work_dir(work_dir), **ran, seed=seed)
                except CompareError as e:
                    log(f'    {e}')
                    runs.append(dict(ran, error=str(e), seed=seed, work_dir=work_dir))
                    continue
                _no_detections_is_zero(run, task)
                headline = TASKS[task].metrics[0]
                log(f"    {headline} {run['metrics'].get(headline, float('nan')):.4g}, "
                    f"{run['s_per_step']:.2f} s per step, peak {ran['peak_rss_mb']:.0f} MB, "
                    f"{ran['seconds']:.0f} s")
                runs.append(run)
            result[name][task] = summarize(runs, TASKS[task].metrics)
    return result


# -- reading work dirs ---------------------------------------------------------------------

def _no_detections_is_zero(run: dict, task: str):
    """mmdet logs no metric when no box scored above the test threshold (an untrained
    detector): that evaluation's mAP is 0."""
    if not run['metrics'] and task in TASKS and TASKS[task].data == 'coco':
        run['metrics'] = {k: 0. for k in TASKS[task].metrics}
        run['note'] = 'no detections above the score threshold: mAP 0'


def _log_files(work_dir: str) -> List[str]:
    """mmengine's JSON scalar logs of a work dir (``<timestamp>/vis_data/<timestamp>.json``),
    oldest first (a resumed run adds a newer one)."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', '*.json'))
    return sorted(f for f in files if osp.basename(f) != 'scalars.json')


def _dumped_config(work_dir: str) -> Optional[str]:
    """The config the Runner dumped into its work dir (``<work_dir>/<config name>.py``)."""
    configs = sorted(glob.glob(osp.join(work_dir, '*.py')))
    return configs[-1] if configs else None


def describe_backbone(backbone: dict) -> Tuple[str, str]:
    """``(name, label)`` of a config's backbone: the :data:`PEERS` variant whose settings it
    holds (the most settings where several do; a small variant gets ``_small``), else its
    type and size."""
    kind = str(backbone.get('type', '?')).split('.')[-1]

    def same(a, b):
        return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b

    best = None
    for name, peer in PEERS.items():
        for small in (False, True):
            expected = dict(peer.cfg, **(peer.small if small else {}))
            if expected.pop('type').split('.')[-1] != kind:
                continue
            expected.pop('out_indices', None)
            if all(k in backbone and same(backbone[k], v) for k, v in expected.items()):
                found = ((name + '_small', peer.label + ' (small)') if small
                         else (name, peer.label))
                if best is None or len(expected) > best[0]:
                    best = (len(expected), found)
    if best:
        return best[1]
    size = next((f'{k}={backbone[k]}' for k in ('arch', 'depth', 'embed_dims')
                 if k in backbone), '')
    label = f'{kind} {size}'.strip()
    return label.replace(' ', '_'), label


def collect_work_dir(work_dir: str) -> dict:
    """What a finished ``tools/train.py`` work dir says about its run, read from mmengine's
    logs: ``metrics`` (the last evaluation's; empty where it logged none, as mmdet does when
    no box scored above the threshold), ``s_per_step`` and ``data_s_per_step`` (medians
    of the logged per-iteration times, the first logged window left out as warm-up),
    ``steps``, ``memory_mb`` (the largest logged CUDA memory, or None on a CPU), ``config``,
    ``backbone`` and ``label`` (:func:`describe_backbone`); for a run of :func:`train_run`,
    also its ``seconds`` and ``peak_rss_mb``. A folder without logs raises
    :class:`CompareError`."""
    files = _log_files(work_dir)
    if not files:
        raise CompareError(f'{work_dir}: no mmengine log (<timestamp>/vis_data/<timestamp>.json); '
                           'pass a work dir that tools/train.py wrote')
    train, evals = [], []
    for path in files:
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a killed run
                (train if any('loss' in k for k in row) else evals).append(row)
    if not evals:
        raise CompareError(f'{work_dir}: its logs hold no evaluation yet (did the run finish '
                           'its validation?)')
    times = [r['time'] for r in train if 'time' in r]
    data_times = [r['data_time'] for r in train if 'data_time' in r]
    warm = 1 if len(times) > 1 else 0
    memory = [r['memory'] for r in train if 'memory' in r]
    config = _dumped_config(work_dir)
    backbone = {}
    if config:
        from mmengine.config import Config
        backbone = Config.fromfile(config, import_custom_modules=False).model.get(
            'backbone', {}) or {}
    name, label = describe_backbone(dict(backbone))
    metrics = {k: v for k, v in evals[-1].items() if k not in _NOT_METRICS}
    ran = {}
    if osp.isfile(osp.join(work_dir, RUN_FILE)):
        with open(osp.join(work_dir, RUN_FILE)) as f:
            ran = {k: v for k, v in json.load(f).items() if k in ('seconds', 'peak_rss_mb')}
    return dict(ran, metrics=metrics,
                s_per_step=statistics.median(times[warm:]) if times else None,
                data_s_per_step=statistics.median(data_times[warm:]) if data_times else None,
                steps=max((r.get('step', r.get('iter', 0)) for r in train), default=0),
                memory_mb=max(memory) if memory else None,
                config=config, backbone=name, label=label, work_dir=work_dir)


def find_work_dirs(paths: Sequence[str]) -> List[str]:
    """The work dirs at or under ``paths`` (folders holding mmengine logs)."""
    found = []
    for path in paths:
        if not osp.isdir(path):
            raise CompareError(f'--collect: {path} is not a folder')
        if _log_files(path):
            found.append(path)
            continue
        below = sorted({osp.dirname(osp.dirname(osp.dirname(f)))
                        for f in glob.glob(osp.join(path, '**', 'vis_data', '*.json'),
                                           recursive=True)})
        if not below:
            raise CompareError(f'--collect: no mmengine work dir at or under {path}')
        found += below
    return found


def task_of(config_file: Optional[str]) -> str:
    """The :data:`TASKS`-style name of a dumped config's model (for collected runs)."""
    if not config_file:
        return 'unknown'
    from mmengine.config import Config
    model = Config.fromfile(config_file, import_custom_modules=False).model
    kind = model.get('type', '')
    if kind == 'RetinaNet':
        return 'retinanet'
    if kind == 'MaskRCNN':
        return 'maskrcnn'
    head = model.get('decode_head', {}).get('type', '')
    return {'FPNHead': 'semantic_fpn', 'UPerHead': 'upernet'}.get(head, kind.lower() or 'unknown')


def collect(paths: Sequence[str], log=print) -> Dict[str, Dict[str, dict]]:
    """``{backbone: {task: summary}}`` from work dirs trained anywhere (runs of one backbone
    and task with different seeds are summarised together)."""
    grouped: Dict[Tuple[str, str], List[dict]] = {}
    labels = {}
    for work_dir in find_work_dirs(paths):
        try:
            run = collect_work_dir(work_dir)
        except CompareError as e:
            log(f'  collect: skipped {e}')
            continue
        task = task_of(run['config'])
        _no_detections_is_zero(run, task)
        grouped.setdefault((run['backbone'], task), []).append(run)
        labels[run['backbone']] = run['label']
        log(f"  collect {run['label']:>16} {task:>12}: {work_dir}")
    result: Dict[str, Dict[str, dict]] = {}
    for (name, task), runs in grouped.items():
        keys = TASKS[task].metrics if task in TASKS else tuple(sorted(runs[-1]['metrics']))
        result.setdefault(name, {})[task] = dict(summarize(runs, keys), label=labels[name])
    return result


# -- summaries -----------------------------------------------------------------------------

def summarize(runs: List[dict], keys: Sequence[str]) -> dict:
    """Mean and spread (sample standard deviation; 0 for one run) of each metric over the
    runs that finished, the median seconds per step, the largest peak memory, and the runs."""
    ok = [r for r in runs if 'error' not in r]
    summary = dict(runs=runs, n=len(ok))
    if not ok:
        summary['error'] = runs[0]['error'] if runs else 'no run'
        return summary
    summary['mean'], summary['std'] = {}, {}
    for key in keys:
        values = [r['metrics'][key] for r in ok if key in r['metrics']]
        if values:
            summary['mean'][key] = statistics.fmean(values)
            summary['std'][key] = statistics.stdev(values) if len(values) > 1 else 0.
    steps = [r['s_per_step'] for r in ok if r.get('s_per_step') is not None]
    summary['s_per_step'] = statistics.median(steps) if steps else None
    for key in ('peak_rss_mb', 'memory_mb'):
        values = [r[key] for r in ok if r.get(key) is not None]
        summary[key] = max(values) if values else None
    if len(ok) < len(runs):
        summary['failed'] = [r['error'] for r in runs if 'error' in r]
    return summary
