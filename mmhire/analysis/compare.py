"""HireMLP side by side with the backbones users would pick instead (``tools/compare.py``).

Two checks, each on every backbone of :data:`mmhire.analysis.peers.PEERS` asked for:

- **flexibility**: a forward and a backward pass at each input size, of the backbone alone and
  inside the same RetinaNet and Semantic FPN (the backbone swapped in, the neck's input widths
  set to its outputs). Each cell holds ``'ok'`` or the first line of what the model raised; a
  peer that cannot take part says why (MLP-Mixer has no feature pyramid).
- **cost**: params, MACs and CPU inference latency at one size (800x1216 by default), and how
  latency and MACs grow with the resolution, each backbone and size in a fresh process (as
  ``tools/benchmark.py`` measures). A fixed-size peer (MLP-Mixer) is built again at each size,
  as it would have to be: its token MLPs grow with the token count.

:func:`write_report` writes ``report.json``, ``report.md`` and PNG plots into a new folder.
"""
import copy
import datetime
import json
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from mmhire.errors import CompareError

from .peers import (NO_PYRAMID, PEERS, backbone_cfg, build_backbone, check_names,
                    import_toolbox, out_channels)

Size = Tuple[int, int]
DEFAULT_SIZES = ((224, 224), (800, 1216), (333, 517), (61, 45), (16, 16))
DEFAULT_SCALING = (224, 448, 672, 896, 1120, 1344)
CONTEXTS = ('backbone', 'retinanet', 'semantic_fpn')
REPORT_FILES = ('report.json', 'report.md')


def parse_size(text: str) -> Size:
    """``'800x1216'`` -> ``(800, 1216)``; anything else is a :class:`CompareError`."""
    parts = text.lower().split('x')
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise CompareError(f'cannot read the size {text!r}: write HxW with positive integers, '
                           'e.g. 800x1216')
    return int(parts[0]), int(parts[1])


def size_key(size: Size) -> str:
    return f'{size[0]}x{size[1]}'


def error_cell(error: BaseException) -> str:
    """The first line of an exception, with its type: what a report cell holds."""
    lines = str(error).strip().splitlines()
    return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


def _first_error(fn: Callable[[], None]) -> str:
    try:
        fn()
    except Exception as e:  # a peer's failure is a cell of the report, never a crash
        return error_cell(e)
    return 'ok'


# -- flexibility ---------------------------------------------------------------------------

def _backbone_step(name, size, small, batch=2):
    # one model for every size, as a user has it: a fixed-size peer (MLP-Mixer) is built for
    # its pretraining size, and every other size is its error (the cost check builds it per size)
    model = build_backbone(name, small)
    model.train()  # (mmdet's ResNet.train() returns None: no chaining)
    outs = model(torch.randn(batch, 3, *size))
    sum(o.float().mean() for o in outs).backward()


def _model_cfg(name, context, small, base_cfgs):
    cfg = copy.deepcopy(base_cfgs[context].model)
    cfg.backbone = backbone_cfg(name, small, scope='mmdet' if context == 'retinanet' else 'mmseg')
    cfg.neck.in_channels = list(out_channels(name, small))
    if small:
        cfg.neck.out_channels = 32
        if context == 'retinanet':
            cfg.bbox_head.in_channels = cfg.bbox_head.feat_channels = 32
        else:
            cfg.decode_head.in_channels = [32] * 4
            cfg.decode_head.channels = 16
    return cfg


def _model_step(name, context, size, small, base_cfgs, batch=2):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData, PixelData

    import_toolbox(PEERS[name].toolbox)
    scope = 'mmdet' if context == 'retinanet' else 'mmseg'
    h, w = size
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1., 1.))
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmdet':
            import mmdet.models  # noqa: F401
            from mmdet.registry import MODELS
            from mmdet.structures import DetDataSample
            samples = []
            for _ in range(batch):
                sample = DetDataSample(metainfo=meta)
                sample.gt_instances = InstanceData(
                    bboxes=torch.tensor([[0.1 * w, 0.1 * h, 0.6 * w, 0.7 * h]]),
                    labels=torch.tensor([0]))
                samples.append(sample)
        else:
            import mmseg.models  # noqa: F401
            from mmseg.registry import MODELS
            from mmseg.structures import SegDataSample
            samples = []
            for _ in range(batch):
                sample = SegDataSample(metainfo=meta)
                sample.gt_sem_seg = PixelData(data=torch.randint(0, 2, (1, h, w)))
                samples.append(sample)
        model = revert_sync_batchnorm(MODELS.build(_model_cfg(name, context, small, base_cfgs)))
        model.train()
        losses = model.loss(torch.randn(batch, 3, h, w), samples)
        sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
            for k, v in losses.items() if 'loss' in k).backward()


def flexibility(names: Sequence[str], sizes: Sequence[Size], contexts=CONTEXTS, small=False,
                base_cfgs=None, log=print) -> Dict[str, Dict[str, Dict[str, str]]]:
    """``{backbone: {context: {'HxW': 'ok' or the error line}}}``. ``base_cfgs`` maps
    ``'retinanet'`` and ``'semantic_fpn'`` to loaded configs whose model is the host."""
    result = {}
    for name in check_names(names):
        result[name] = {}
        for context in contexts:
            cells = {}
            for size in sizes:
                if context != 'backbone' and not PEERS[name].pyramid:
                    cells[size_key(size)] = NO_PYRAMID
                    continue
                start = time.perf_counter()
                if context == 'backbone':
                    cells[size_key(size)] = _first_error(
                        lambda: _backbone_step(name, size, small))
                else:
                    cells[size_key(size)] = _first_error(
                        lambda: _model_step(name, context, size, small, base_cfgs))
                log(f'  flexibility {PEERS[name].label:>16} {context:>12} {size_key(size):>9}: '
                    f'{cells[size_key(size)][:60]} ({time.perf_counter() - start:.1f} s)')
            result[name][context] = cells
    return result


# -- cost ----------------------------------------------------------------------------------

def latency_ms(model, size, warmup=1, repeats=3) -> float:
    """Median no-grad inference time of ``model`` on one image of ``size``, in ms."""
    x = torch.randn(1, 3, *size)
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:]) * 1e3


def _cost_at(name, size, small, warmup, repeats, threads=None):
    from .complexity import count_macs
    if threads:  # in a fresh process
        torch.set_num_threads(threads)
        torch.manual_seed(0)
    model = build_backbone(name, small, img_size=size)
    model.eval()
    return dict(params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                gmacs=count_macs(model, (torch.randn(1, 3, *size),)) / 1e9,
                latency_ms=latency_ms(model, size, warmup, repeats))


def _fresh_process(*args):
    """:func:`_cost_at` in a fresh process, as ``tools/benchmark.py`` times each model: in one
    long process a backbone's latency moved with what ran before it (glibc's allocator state:
    page faults, docs/speed.md), so ratios changed with the other backbones asked for."""
    from concurrent.futures import ProcessPoolExecutor

    from .speed import _job_context
    with ProcessPoolExecutor(1, mp_context=_job_context('system')) as pool:
        return pool.submit(_cost_at, *args, torch.get_num_threads()).result()


def cost(names: Sequence[str], size: Size = (800, 1216), scaling=DEFAULT_SCALING, small=False,
         warmup=1, repeats=3, log=print) -> Dict[str, dict]:
    """``{backbone: {params_m, gmacs, latency_ms, scaling: {'SxS': {params_m, gmacs,
    latency_ms}}}}``, each measured in a fresh process with this process's thread count; a
    peer that cannot be built or run holds ``error`` instead."""
    result = {}
    for name in check_names(names):
        entry = {}
        try:
            entry.update(_fresh_process(name, size, small, warmup, repeats))
            log(f"  cost {PEERS[name].label:>16} at {size_key(size)}: "
                f"{entry['params_m']:.1f} M params, {entry['gmacs']:.2f} GMACs, "
                f"{entry['latency_ms']:.0f} ms")
        except Exception as e:
            entry['error'] = error_cell(e)
            log(f'  cost {PEERS[name].label:>16} at {size_key(size)}: {entry["error"]}')
        entry['scaling'] = {}
        for side in scaling:
            try:
                entry['scaling'][size_key((side, side))] = _fresh_process(
                    name, (side, side), small, warmup, repeats)
            except Exception as e:
                entry['scaling'][size_key((side, side))] = dict(error=error_cell(e))
        result[name] = entry
    return result


# -- report --------------------------------------------------------------------------------

def check_out_dir(out_dir: str):
    """Refuse a folder that already holds a report (nothing earlier is overwritten)."""
    held = [f for f in REPORT_FILES if os.path.exists(os.path.join(out_dir, f))]
    if held:
        raise CompareError(f'{out_dir} already holds a report ({", ".join(held)}); pass a new '
                           '--out folder or move that one away')


def default_out_dir() -> str:
    return os.path.join('work_dirs', 'compare_' + datetime.datetime.now().strftime(
        '%Y%m%d_%H%M%S'))


def build_report(names, flex=None, costs=None, meta=None, metrics=None) -> dict:
    """One entry per backbone: ``label``, ``params_m``, ``gmacs``, ``latency_ms`` (at the
    cost size), ``sizes`` (the backbone alone: 'HxW' -> cell), ``sizes_in`` (per host model)
    and ``scaling``; ``metrics`` (``{task: summary}``, :mod:`.training`) where trained or
    collected. A collected backbone that is not a known peer gets an entry of its own."""
    backbones = {}
    metrics = metrics or {}
    for name in list(names) + [n for n in metrics if n not in names]:
        if name in PEERS:
            entry = dict(label=PEERS[name].label, toolbox=PEERS[name].toolbox)
        else:
            label = next((t.get('label') for t in metrics[name].values() if t.get('label')),
                         name)
            entry = dict(label=label, toolbox='')
        if costs and name in costs:
            entry.update({k: v for k, v in costs[name].items()})
        if flex and name in flex:
            entry['sizes'] = flex[name].get('backbone', {})
            entry['sizes_in'] = {c: cells for c, cells in flex[name].items() if c != 'backbone'}
        if name in metrics:
            entry['metrics'] = metrics[name]
        backbones[name] = entry
    return dict(meta=meta or {}, backbones=backbones)


def _cell(text, limit=90) -> str:
    text = str(text).replace('|', '/')
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _md_table(header: List[str], rows: List[List[str]]) -> str:
    """A markdown table; long cells are cut (report.json keeps them whole), and a row whose
    cells all hold the same message shows it once."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        cells = row[1:]
        if len(cells) > 1 and len(set(cells)) == 1 and cells[0] != 'ok':
            cells = [cells[0]] + ['(same)'] * (len(cells) - 1)
        lines.append('| ' + ' | '.join(_cell(c) for c in [row[0]] + cells) + ' |')
    return '\n'.join(lines)


def report_markdown(report: dict) -> str:
    meta, backbones = report['meta'], report['backbones']
    parts = ['# HireMLP and its peers, side by side', '',
             f"{meta.get('date', '')}, {meta.get('cpu', '')}; command: "
             f"`{meta.get('command', '')}`" + ('; small variants' if meta.get('small') else ''),
             '']
    flex = {n: b for n, b in backbones.items() if 'sizes' in b}
    if flex:
        parts += ['## Flexibility: forward + backward at each input size', '']
        for context in CONTEXTS:
            key = 'sizes' if context == 'backbone' else None
            sizes = None
            rows = []
            for name, b in flex.items():
                cells = b['sizes'] if key else b.get('sizes_in', {}).get(context)
                if cells is None:
                    continue
                sizes = sizes or list(cells)
                rows.append([b['label']] + [cells.get(s, '-') for s in sizes])
            if rows:
                title = {'backbone': 'the backbone alone', 'retinanet': 'inside RetinaNet',
                         'semantic_fpn': 'inside Semantic FPN'}[context]
                parts += [f'### {title}', '', _md_table(['backbone'] + sizes, rows), '']
    costed = {n: b for n, b in backbones.items() if 'scaling' in b}
    if costed:
        size = meta.get('cost_size', '')
        parts += [f'## Cost at {size} (CPU, {meta.get("threads", "")} threads, one image)', '']
        rows = [[b['label'], f"{b['params_m']:.1f}" if 'params_m' in b else '-',
                 f"{b['gmacs']:.3g}" if 'gmacs' in b else '-',
                 f"{b['latency_ms']:.0f}" if 'latency_ms' in b else b.get('error', '-')]
                for b in costed.values()]
        parts += [_md_table(['backbone', 'params (M)', 'GMACs', 'latency (ms)'], rows), '']
        sides = list(next(iter(costed.values()))['scaling'])
        for what, unit in (('latency_ms', 'latency (ms)'), ('gmacs', 'GMACs'),
                           ('params_m', 'params (M)')):
            rows = [[b['label']] + [f"{b['scaling'][s][what]:.3g}" if what in b['scaling'][s]
                                    else b['scaling'][s].get('error', '-') for s in sides]
                    for b in costed.values()]
            parts += [f'### {unit} against resolution', '', _md_table(['backbone'] + sides, rows),
                      '']
    parts += _accuracy_markdown(report)
    if meta.get('plots'):
        parts += ['Plots: ' + ', '.join(f'`{p}`' for p in meta['plots']), '']
    return '\n'.join(parts)


def _mean_std(summary, key) -> str:
    if key not in summary.get('mean', {}):
        return '-'
    n = summary.get('n', 1)
    mean, std = summary['mean'][key], summary['std'][key]
    return f'{mean:.3f} ± {std:.3f} (n={n})' if n > 1 else f'{mean:.3f} (n=1)'


def _accuracy_markdown(report: dict) -> List[str]:
    from .training import TASKS
    meta, backbones = report['meta'], report['backbones']
    trained = {n: b for n, b in backbones.items() if b.get('metrics')}
    if not trained:
        return []
    parts = ['## Accuracy under one recipe', '']
    if meta.get('train'):
        parts += [meta['train'], '']
    if meta.get('collected'):
        parts += ['Read from the work dirs at or under: '
                  + ', '.join(f'`{p}`' for p in meta['collected'])
                  + (' (a task trained here and collected too appears twice).'
                     if meta.get('train') else '.'), '']
    tasks = []
    for b in trained.values():
        tasks += [t for t in b['metrics'] if t not in tasks]
    for task in tasks:
        keys = list(TASKS[task].metrics) if task in TASKS else sorted(
            {k for b in trained.values() for k in b['metrics'].get(task, {}).get('mean', {})})
        rows = []
        for b in trained.values():
            summary = b['metrics'].get(task)
            if summary is None:
                continue
            if 'error' in summary:
                rows.append([b['label'], summary['error']] + [''] * (len(keys) + 2))
                continue
            memory = summary.get('memory_mb') or summary.get('peak_rss_mb')
            rows.append([b['label']] + [_mean_std(summary, k) for k in keys]
                        + [f"{summary['s_per_step']:.2f}" if summary.get('s_per_step') else '-',
                           f'{memory:.0f}' if memory else '-',
                           f"{b['latency_ms']:.0f}" if 'latency_ms' in b else '-'])
        title = TASKS[task].label if task in TASKS else task
        latency = f"latency at {meta.get('cost_size', '-')} (ms)"
        header = (['backbone'] + [f'{k} (mean ± std)' for k in keys]
                  + ['s / step', 'peak memory (MB)', latency])
        lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        lines += ['| ' + ' | '.join(_cell(c, 120) for c in row) + ' |' for row in rows]
        parts += [f'### {title}', '', '\n'.join(lines), '']
    return parts


def plot_accuracy(report: dict, out_dir: str) -> List[str]:
    """The headline metric (mean, with its spread over seeds) against latency: the latency of
    the cost check where it ran, else the seconds per training step. One panel per task."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from .training import TASKS
    trained = {n: b for n, b in report['backbones'].items() if b.get('metrics')}
    tasks = []
    for b in trained.values():
        tasks += [t for t, s in b['metrics'].items() if t not in tasks and s.get('mean')]
    if not tasks:
        return []
    use_latency = all('latency_ms' in b for b in trained.values())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        key = TASKS[task].metrics[0] if task in TASKS else None
        for b in trained.values():
            summary = b['metrics'].get(task, {})
            means = summary.get('mean', {})
            k = key if key in means else next(iter(means), None)
            x = b.get('latency_ms') if use_latency else summary.get('s_per_step')
            if k is None or x is None:
                continue
            ax.errorbar([x], [means[k]], yerr=[summary['std'][k]], marker='o', capsize=3,
                        label=b['label'])
        ax.set_title(TASKS[task].label if task in TASKS else task)
        ax.set_xlabel(f"CPU latency at {report['meta'].get('cost_size')} (ms)" if use_latency
                      else 's per training step')
        ax.set_ylabel(key or 'metric')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'accuracy_vs_latency.png'), dpi=100)
    plt.close(fig)
    return ['accuracy_vs_latency.png']


def plot_scaling(report: dict, out_dir: str) -> List[str]:
    """Latency and MACs against resolution (one line per backbone); returns the file names."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    costed = {n: b for n, b in report['backbones'].items() if b.get('scaling')}
    if not costed:
        return []
    files = []
    for what, unit, fname in (('latency_ms', 'CPU latency (ms)', 'latency_vs_resolution.png'),
                              ('gmacs', 'GMACs', 'macs_vs_resolution.png')):
        fig, ax = plt.subplots(figsize=(6, 4))
        for b in costed.values():
            points = [(int(s.split('x')[0]), v[what]) for s, v in b['scaling'].items()
                      if what in v]
            if points:
                ax.plot(*zip(*points), marker='o', label=b['label'])
        ax.set_xlabel('input side (square images)')
        ax.set_ylabel(unit)
        ax.set_yscale('log')
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, fname), dpi=100)
        plt.close(fig)
        files.append(fname)
    return files


def write_report(report: dict, out_dir: str) -> Dict[str, str]:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir`` (made here; one that
    already holds a report is refused). Returns the paths written."""
    check_out_dir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    report['meta']['plots'] = plot_scaling(report, out_dir) + plot_accuracy(report, out_dir)
    paths = {f: os.path.join(out_dir, f) for f in REPORT_FILES}
    with open(paths['report.json'], 'w') as f:
        json.dump(report, f, indent=1)
    with open(paths['report.md'], 'w') as f:
        f.write(report_markdown(report))
    return paths


def describe(names: Optional[Sequence[str]] = None) -> str:
    """One line per known backbone: name, label, toolbox (for ``--list``)."""
    return '\n'.join(f'{n:>11}  {p.label:<16} {p.toolbox}' +
                     ('' if p.pyramid else '  (no pyramid, fixed input size)')
                     for n, p in PEERS.items() if names is None or n in names)
