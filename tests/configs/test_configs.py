"""Every shipped config builds and, shrunk, trains one iteration and evaluates on the demo data."""
import os.path as osp
from urllib.parse import urlparse

import pytest
from config_helpers import ALL_CONFIGS, BASELINE_CONFIGS, ROOT, shrink
from mmengine.config import Config
from mmengine.runner import Runner

from mmhire.apis import PreflightError, check_pretrained
from mmhire.checkpoint import RELEASED_URLS


EXPECTED = {  # what the mission promises, so a config cannot silently disappear
    'configs/maskrcnn_hire_s_fpn_1x_coco.py', 'configs/maskrcnn_hire_t_fpn_1x_coco.py',
    'configs/maskrcnn_hire_b_fpn_1x_coco.py', 'configs/retinanet_hire_t_fpn_1x_coco.py',
    'configs/retinanet_hire_s_fpn_1x_coco.py', 'configs/retinanet_hire_b_fpn_1x_coco.py',
    'configs/fpn_hire_t_512x512_40k_ade20k.py', 'configs/fpn_hire_s_512x512_40k_ade20k.py',
    'configs/fpn_hire_b_512x512_40k_ade20k.py', 'configs/upernet_hire_s_512x512_80k_ade20k.py',
}


def well_formed(url):
    """An https URL of a .pth file; returns its path."""
    parts = urlparse(url)
    assert parts.scheme == 'https' and parts.netloc and parts.path.endswith('.pth'), url
    assert not (parts.params or parts.query or parts.fragment) and ' ' not in url, url
    return parts.path


def test_released_urls_are_the_authors():
    for arch, url in RELEASED_URLS.items():
        assert url == ('https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/'
                       f'hire_mlp_{arch}.pth')


def test_a_local_copy_by_one_override(tmp_path):
    """The documented override; a missing local file names the URL to get it from."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/maskrcnn_hire_s_fpn_1x_coco.py'))
    local = tmp_path / 'checkpoints' / 'hire_mlp_small.pth'
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': str(local)})
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=str(local))
    with pytest.raises(PreflightError, match=f'(?s)missing: {local}.*from '
                                             f'{RELEASED_URLS["small"]} and save it there'):
        check_pretrained(cfg)
    local.parent.mkdir()
    local.write_bytes(b'')
    check_pretrained(cfg)  # a local file is the loader's to check


def test_all_configs_present():
    assert EXPECTED <= set(ALL_CONFIGS)


# The authors' released segmentation files (ggjy/Hire-Wave-MLP.pytorch, mmseg-v0.11/configs):
# (iterations, lr, weight decay, drop path, poly power, warm-up iterations, validation interval)
AUTHORS_SEG_RECIPES = {
    'configs/upernet_hire_s_512x512_80k_ade20k.py': (80000, 1.2e-4, 0.01, 0.2, 1.0, 800, 2000),
    'configs/fpn_hire_t_512x512_40k_ade20k.py': (40000, 2e-4, 0.05, 0.1, 0.9, 0, 4000),
}


@pytest.mark.parametrize('config', sorted(AUTHORS_SEG_RECIPES))
def test_segmentation_configs_follow_the_authors_files(config):
    iters, lr, decay, drop_path, power, warmup, val_interval = AUTHORS_SEG_RECIPES[config]
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.train_cfg.max_iters == iters and cfg.train_cfg.val_interval == val_interval
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == decay
    assert cfg.model.backbone.drop_path_rate == drop_path
    poly = [s for s in cfg.param_scheduler if s.type == 'PolyLR']
    assert len(poly) == 1 and poly[0].power == power and poly[0].end == iters
    assert poly[0].begin == warmup
    assert str(iters // 1000) + 'k' in config  # the name says the schedule


@pytest.mark.parametrize('config', ALL_CONFIGS)
def test_config_declares_what_users_need(config):
    cfg = Config.fromfile(osp.join(ROOT, config))
    assert cfg.custom_imports['imports'] == ['mmhire']
    assert cfg.model.backbone.type == 'HireMLP'
    assert cfg.auto_scale_lr['base_batch_size'] > 0
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    init_cfg = cfg.model.backbone.init_cfg
    if not config.startswith('configs/demo/'):
        # the authors' file of the config's own arch: a T config loads hire_mlp_tiny.pth
        arch = {'t': 'tiny', 's': 'small', 'b': 'base'}[osp.basename(config).split('_')[2]]
        assert cfg.model.backbone.arch == arch
        assert init_cfg == dict(type='Pretrained', checkpoint=RELEASED_URLS[arch])
        assert well_formed(init_cfg.checkpoint).endswith(f'/hire_mlp_{arch}.pth')
    # the exact-resume settings, from configs/_base_/exact_resume.py
    assert dict(type='RNGStateHook') in cfg.custom_hooks
    if cfg.train_cfg.get('type', 'EpochBasedTrainLoop') == 'EpochBasedTrainLoop':
        assert cfg.train_dataloader.persistent_workers is False
        assert cfg.train_dataloader.worker_init_fn == dict(type='seed_worker_from_torch')


# The Small and Base configs are the Tiny recipe with another arch and pretrained file; shrunk to
# one block per stage with the arch's own widths (the same for T, S and B), they are the same
# model as the Tiny one, so only the Tiny one trains here (the next test checks that claim)
VARIANTS = [c for c in ALL_CONFIGS if '_hire_s_' in c or '_hire_b_' in c
            if osp.exists(osp.join(ROOT, c.replace('_hire_s_', '_hire_t_')
                                   .replace('_hire_b_', '_hire_t_')))]
TRAINED = [c for c in ALL_CONFIGS if c not in VARIANTS]


@pytest.mark.parametrize('config', VARIANTS)
def test_small_and_base_configs_are_the_tiny_recipe(config, demo_data, tmp_path):
    tiny = config.replace('_hire_s_', '_hire_t_').replace('_hire_b_', '_hire_t_')
    a, b = (shrink(Config.fromfile(osp.join(ROOT, c)), demo_data, str(tmp_path)).to_dict()
            for c in (config, tiny))
    for d in (a, b):
        for key in ('arch', 'pretrained', 'filename'):
            d.pop(key, None)
    assert a == b


@pytest.mark.parametrize('config', TRAINED)
def test_config_trains_and_evaluates(config, demo_data, tmp_path):
    cfg = shrink(Config.fromfile(osp.join(ROOT, config)), demo_data, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    metrics = runner.val()
    key = 'coco/bbox_mAP' if cfg.default_scope == 'mmdet' else 'mIoU'
    assert key in metrics, metrics
    if 'maskrcnn' in config:
        assert 'coco/segm_mAP' in metrics


BASELINE_BACKBONES = {'r50': ('ResNet', 'ResNetV1c'), 'swin-t': ('SwinTransformer',),
                      'pvtv2-b2': ('PyramidVisionTransformerV2',
                                   'mmdet.PyramidVisionTransformerV2'),
                      'convnext-t': ('ConvNeXt',)}


def test_baselines_cover_every_host_and_peer():
    hosts = ('maskrcnn', 'retinanet', 'fpn')
    assert len(BASELINE_CONFIGS) == len(hosts) * len(BASELINE_BACKBONES)
    for host in hosts:
        for peer in BASELINE_BACKBONES:
            assert any(osp.basename(c).startswith(f'{host}_{peer}_') for c in BASELINE_CONFIGS)


@pytest.mark.parametrize('config', BASELINE_CONFIGS)
def test_baseline_differs_from_its_hiremlp_config_only_in_the_backbone(config):
    """Everything but the backbone, the neck's input widths and custom_imports is the HireMLP-S
    config's: schedule, optimizer, data, heads, seeds."""
    cfg = Config.fromfile(osp.join(ROOT, config), import_custom_modules=False)
    host = osp.basename(config).split('_')[0]
    base = Config.fromfile(osp.join(ROOT, 'configs', {
        'maskrcnn': 'maskrcnn_hire_s_fpn_1x_coco.py',
        'retinanet': 'retinanet_hire_s_fpn_1x_coco.py',
        'fpn': 'fpn_hire_s_512x512_40k_ade20k.py'}[host]))
    peer = osp.basename(config).split('_')[1]
    assert cfg.model.backbone.type in BASELINE_BACKBONES[peer]
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    well_formed(cfg.model.backbone.init_cfg.checkpoint)
    a, b = cfg.to_dict(), base.to_dict()
    for d in (a, b):
        d['model'].pop('backbone')
        d['model']['neck'].pop('in_channels')
        for key in ('custom_imports', 'pretrained', 'arch', 'filename'):
            d.pop(key, None)
    assert a == b


@pytest.mark.slow
@pytest.mark.parametrize('config', BASELINE_CONFIGS)
def test_baseline_trains_a_step(config, demo_data, tmp_path):
    cfg = shrink(Config.fromfile(osp.join(ROOT, config)), demo_data, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
