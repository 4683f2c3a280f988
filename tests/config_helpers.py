"""Shrinking a shipped config to seconds on CPU while keeping its detector / segmentor."""
import glob
import os.path as osp

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# every runnable HireMLP config (configs/_base_/ holds fragments that the others inherit;
# configs/baselines/ holds the peers' configs, tested on their own)
_FILES = sorted(osp.relpath(p, ROOT)
                for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                if '_base_' not in p)
ALL_CONFIGS = [p for p in _FILES if not p.startswith(osp.join('configs', 'baselines'))]
BASELINE_CONFIGS = [p for p in _FILES if p.startswith(osp.join('configs', 'baselines'))]


def demo_coco_options(demo_root: str) -> list:
    """``--cfg-options`` that point a COCO config's train and val sets at the demo data."""
    coco = osp.join(demo_root, 'demo_coco')
    return [f'train_dataloader.dataset.data_root={coco}/',
            'train_dataloader.dataset.ann_file=annotations/instances_train.json',
            'train_dataloader.dataset.data_prefix.img=train/',
            f'val_dataloader.dataset.data_root={coco}/',
            'val_dataloader.dataset.ann_file=annotations/instances_val.json',
            'val_dataloader.dataset.data_prefix.img=val/',
            f'val_evaluator.ann_file={coco}/annotations/instances_val.json']


def _set_scales(pipeline, scale, crop):
    for t in pipeline:
        if t['type'] in ('Resize', 'RandomResize') and 'scale' in t:
            t['scale'] = scale
        if t['type'] == 'RandomCrop':
            t['crop_size'] = crop


def shrink(cfg: Config, demo_root: str, work_dir: str) -> Config:
    """A HireMLP backbone of depth 1 per stage with the config's own widths (other backbones
    as they are), no pretrained weights, tiny images, the demo data."""
    cfg = cfg.copy() if hasattr(cfg, 'copy') else cfg
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    det = cfg.default_scope == 'mmdet'
    backbone = cfg.model.backbone
    if backbone.type == 'HireMLP':
        backbone.arch = dict(depths=[1, 1, 1, 1], embed_dims=_dims(backbone.arch))
    backbone.init_cfg = None
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.num_workers = 0
        loader.persistent_workers = False
        # mmseg evaluates images of different sizes one at a time
        loader.batch_size = 2 if det or split == 'train' else 1
        ds = loader.dataset
        ds.indices = 2
        if det:
            part = 'train' if split == 'train' else 'val'
            ds.data_root = osp.join(demo_root, 'demo_coco') + '/'
            ds.ann_file = f'annotations/instances_{part}.json'
            ds.data_prefix = dict(img=f'{part}/')
            ds.metainfo = dict(classes=('square', 'circle', 'triangle'))
            _set_scales(ds.pipeline, (96, 96), None)
        else:
            ds.data_root = osp.join(demo_root, 'demo_ade')
            _set_scales(ds.pipeline, (128, 64), (64, 64))
    if det:
        ann = osp.join(demo_root, 'demo_coco', 'annotations', 'instances_val.json')
        cfg.val_evaluator.ann_file = ann
        cfg.test_evaluator.ann_file = ann
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=100)
        _set_num_classes(cfg.model, 3)  # the demo set's classes
        # an untrained detector scores below the usual 0.05: keep its boxes so COCO eval runs
        test_cfg = cfg.model.test_cfg
        for part in (test_cfg.get('rcnn'), test_cfg):
            if part is not None and 'score_thr' in part:
                part.score_thr = 0.0
    else:
        cfg.model.data_preprocessor.size = (64, 64)
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 100
    return cfg


def _dims(arch):
    from mmhire import HireMLP
    return HireMLP(arch=arch).embed_dims if isinstance(arch, str) else arch['embed_dims']


def _set_num_classes(node, n):
    if isinstance(node, dict):
        if 'num_classes' in node:
            node['num_classes'] = n
        for v in node.values():
            _set_num_classes(v, n)
    elif isinstance(node, list):
        for v in node:
            _set_num_classes(v, n)
