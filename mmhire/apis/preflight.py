"""Checks the tools run before building anything, so that a missing file is one clear message.

Each check raises :class:`PreflightError` with what is missing, where to get it, how to lay it
out, and how to run without it (a pretrained file that fails to download: the
:class:`CheckpointError` of :func:`mmhire.checkpoint.download`).
"""
import glob
import os
import os.path as osp
from urllib.parse import urlparse

from mmhire.checkpoint import RELEASED_URLS, URL_SCHEMES, download, is_url
from mmhire.errors import PreflightError  # noqa: E402,F401  (raised here; defined with the rest)


DATASET_HINTS = {
    'CocoDataset': (
        'COCO 2017: download train2017.zip, val2017.zip and annotations_trainval2017.zip from '
        'https://cocodataset.org/#download and unpack them as\n'
        '    data/coco/train2017/  data/coco/val2017/  '
        'data/coco/annotations/instances_{train,val}2017.json'),
    'ADE20KDataset': (
        'ADE20K: download ADEChallengeData2016.zip from '
        'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unpack it as\n'
        '    data/ade/ADEChallengeData2016/images/{training,validation}/\n'
        '    data/ade/ADEChallengeData2016/annotations/{training,validation}/'),
}
DEMO_HINT = ('To try the whole pipeline without it, make the demo data and use a demo config:\n'
             '    python -m mmhire.datasets.demo_data\n'
             '    python tools/train.py configs/demo/maskrcnn_hire_t_fpn_demo.py')


def _datasets(dataset, where):
    """Yield (dataset dict, config path) for a dataset and the ones it wraps."""
    if not isinstance(dataset, dict):
        return
    if 'dataset' in dataset:
        yield from _datasets(dataset['dataset'], where + '.dataset')
    for i, d in enumerate(dataset.get('datasets', []) or []):
        yield from _datasets(d, f'{where}.datasets.{i}')
    if 'dataset' not in dataset and 'datasets' not in dataset:
        yield dataset, where


def _dataset_paths(dataset, where):
    root = dataset.get('data_root') or ''
    ann = dataset.get('ann_file')
    if ann:
        yield osp.join(root, ann), f'{where}.ann_file'
    for key, prefix in (dataset.get('data_prefix') or {}).items():
        if isinstance(prefix, str):
            yield osp.join(root, prefix), f'{where}.data_prefix.{key}'
    if root and not ann and not dataset.get('data_prefix'):
        yield root, f'{where}.data_root'


def check_datasets(cfg, splits=('train', 'val')):
    """Every dataset path of the dataloaders (and evaluators) used by ``splits`` exists, and
    no file in their folders is empty (a download or copy cut short)."""
    missing, types, folders = [], set(), []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        if loader.get('persistent_workers') and not loader.get('num_workers'):
            # torch's DataLoader would stop the run with a bare ValueError
            raise PreflightError(
                f'{split}_dataloader has persistent_workers=True but num_workers=0: persistent '
                f'workers need workers. Set {split}_dataloader.persistent_workers=False (or '
                f'num_workers to 1 or more)')
        for dataset, where in _datasets(loader.get('dataset'), f'{split}_dataloader.dataset'):
            types.add(dataset.get('type'))
            for path, key in _dataset_paths(dataset, where):
                if not osp.exists(path):
                    missing.append((path, key))
                elif osp.isdir(path):
                    folders.append(path)
        evaluator = cfg.get(f'{split}_evaluator')
        for i, metric in enumerate(evaluator if isinstance(evaluator, list) else [evaluator]):
            if isinstance(metric, dict) and metric.get('ann_file') and \
                    not osp.exists(metric['ann_file']):
                missing.append((metric['ann_file'], f'{split}_evaluator.ann_file'))
    if missing:
        lines = '\n'.join(f'    {p}   ({w})' for p, w in dict(missing).items())
        hints = '\n'.join(DATASET_HINTS[t] for t in sorted(types, key=str) if t in DATASET_HINTS)
        raise PreflightError(
            f'the dataset this config reads is missing:\n{lines}\n'
            f'{hints or "Check data_root / ann_file / data_prefix in the config."}\n'
            f'Data elsewhere? --cfg-options train_dataloader.dataset.data_root=PATH/ (and the same '
            f'for val_dataloader / test_dataloader).\n{DEMO_HINT}')
    empty = [path for folder in sorted(set(folders)) for path in _empty_files(folder)]
    if empty:
        shown = '\n'.join(f'    {p}' for p in empty[:MAX_LISTED])
        more = f'\n    ... and {len(empty) - MAX_LISTED} more' if len(empty) > MAX_LISTED else ''
        raise PreflightError(
            f'the dataset has empty files (0 bytes), which no image or label decoder can read:\n'
            f'{shown}{more}\n'
            f'A download or copy was cut short: copy these files again from the original data.')


MAX_LISTED = 10


def _empty_files(folder, limit=MAX_LISTED + 1000):
    """Files of size 0 under ``folder`` (one ``stat`` per file, no decoding)."""
    found, stack = [], [folder]
    while stack and len(found) < limit:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(entry.path)
                elif entry.is_file() and entry.stat().st_size == 0:
                    found.append(entry.path)
    return sorted(found)


def check_pretrained(cfg):
    """The backbone's ``init_cfg`` checkpoint exists: a local path, or an ``http(s)://`` URL,
    downloaded here into torch.hub's cache (once; later runs read the cache) and checked, so a
    failing download stops the run before the datasets are built."""
    backbone = cfg.model.get('backbone') or {}
    init_cfg = backbone.get('init_cfg')
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
        return
    path = init_cfg.get('checkpoint')
    if path and is_url(path):
        # other schemes (open-mmlab://, torchvision://, s3://) are mmengine's, for its backbones
        if urlparse(path).scheme in URL_SCHEMES or backbone.get('type') == 'HireMLP':
            download(path)
        return
    if not path or osp.isfile(path):
        return
    url = next((u for u in RELEASED_URLS.values() if osp.basename(u) == osp.basename(path)), None)
    where = (f'Download it from {url} and save it there, or let the run download it: '
             f'--cfg-options model.backbone.init_cfg.checkpoint={url}' if url else
             'Download it and save it there, or give its http(s) URL as the checkpoint')
    raise PreflightError(
        f'the pretrained backbone checkpoint is missing: {path}\n{where}\n'
        f'or train the backbone from scratch: --cfg-options model.backbone.init_cfg=None')


def check_checkpoint_file(path):
    if not osp.isfile(path):
        raise PreflightError(f'checkpoint not found: {path}\n'
                             f'Give the .pth file tools/train.py wrote (work_dirs/<config>/...)')


def check_work_dir_is_free(work_dir):
    """Refuse to train into a work dir that holds checkpoints, unless resuming."""
    found = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    if found or osp.exists(osp.join(work_dir, 'last_checkpoint')):
        shown = ', '.join(osp.basename(f) for f in found[:5]) or 'last_checkpoint'
        raise PreflightError(
            f'work dir {work_dir} already holds checkpoints of an earlier run ({shown}); '
            f'training again would overwrite them.\n'
            f'Continue that run with --resume, or choose another --work-dir')
