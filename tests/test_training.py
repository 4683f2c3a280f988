"""The comparison's train check and work-dir collector (mmhire.analysis.training), without
training: the configs it writes, how it names backbones, how it summarises and reads logs."""
import json

import pytest
from mmengine.config import Config

from mmhire.analysis.peers import PEERS
from mmhire.analysis.training import (ROOT, TASKS, collect, collect_work_dir, describe_backbone,
                                      find_work_dirs, run_config, summarize)
from mmhire.errors import CompareError


def flat(cfg, prefix=''):
    """Every leaf of a config as 'a.b.c' -> value."""
    out = {}
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg)
    for k, v in items:
        key = f'{prefix}{k}'
        if isinstance(v, (dict, list)) and v:
            out.update(flat(v, key + '.'))
        else:
            out[key] = v
    return out


@pytest.mark.parametrize('task', list(TASKS))
def test_run_config_differs_only_in_backbone_neck_widths_and_imports(task, tmp_path):
    hire = run_config(task, 'hire_t', seed=3, data_dir=str(tmp_path), length=2)
    for name in ('resnet18', 'swin_t'):
        peer = run_config(task, name, seed=3, data_dir=str(tmp_path), length=2)
        a, b = flat(hire.to_dict()), flat(peer.to_dict())
        differ = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
        assert all(k.startswith(('model.backbone.', 'model.neck.in_channels.',
                                 'custom_imports.')) for k in differ), sorted(differ)
        assert peer.model.neck.in_channels == list(PEERS[name].channels)
    # the demo's own HireMLP-T settings stay (drop path); a ResNet trains its norms
    demo = Config.fromfile(f'{ROOT}/{TASKS[task].config}')
    assert hire.model.backbone.drop_path_rate == demo.model.backbone.drop_path_rate
    assert hire.model.backbone.arch == 'tiny' and hire.model.backbone.init_cfg is None
    assert run_config(task, 'resnet50', 0, str(tmp_path)).model.backbone.norm_eval is False
    assert hire.randomness.seed == 3
    key = TASKS[task].length
    assert hire.train_cfg[key] == 2 and hire.train_cfg.val_interval == 2
    assert str(tmp_path) in hire.train_dataloader.dataset.data_root
    if TASKS[task].data == 'coco':
        assert hire.val_evaluator.ann_file.startswith(str(tmp_path))


def test_describe_backbone_names_peers_and_others():
    for name, peer in PEERS.items():
        assert describe_backbone(dict(peer.cfg, init_cfg=None)) == (name, peer.label)
    small = dict(PEERS['hire_t'].cfg, **PEERS['hire_t'].small)
    assert describe_backbone(small) == ('hire_t_small', 'HireMLP-T (small)')
    assert describe_backbone(dict(type='ResNet', depth=101)) == ('ResNet_depth=101',
                                                                 'ResNet depth=101')
    assert describe_backbone(dict(type='mmdet.ResNet', depth=50))[0] == 'resnet50'


def test_summarize_gives_mean_spread_and_failures():
    runs = [dict(metrics={'mIoU': 40., 'mAcc': 50.}, s_per_step=1.0, peak_rss_mb=700.),
            dict(metrics={'mIoU': 44., 'mAcc': 52.}, s_per_step=1.2, peak_rss_mb=710.),
            dict(error='RuntimeError: boom')]
    s = summarize(runs, ('mIoU', 'mAcc'))
    assert s['n'] == 2 and s['mean'] == {'mIoU': 42., 'mAcc': 51.}
    assert s['std']['mIoU'] == pytest.approx(2 ** 0.5 * 2)  # sample standard deviation
    assert s['s_per_step'] == pytest.approx(1.1) and s['peak_rss_mb'] == 710.
    assert s['failed'] == ['RuntimeError: boom']
    assert summarize(runs[2:], ('mIoU',))['error'] == 'RuntimeError: boom'
    assert summarize(runs[:1], ('mIoU',))['std'] == {'mIoU': 0.}


def write_log(folder, rows):
    folder.mkdir(parents=True)
    (folder / 'vis_data').mkdir()
    with open(folder / 'vis_data' / f'{folder.name}.json', 'w') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')
    (folder / 'vis_data' / 'scalars.json').write_text('')  # LocalVisBackend's, not read


def test_collect_work_dir_reads_a_resumed_run_with_cuda_memory(tmp_path):
    work = tmp_path / 'work'
    train = dict(loss=1.0, lr=1e-3, data_time=0.01, epoch=1, iter=1)
    write_log(work / '20260101_000000', [dict(train, time=5.0, memory=900, step=10),
                                         dict(train, time=1.0, memory=1200, step=20)])
    write_log(work / '20260102_000000', [dict(train, time=1.2, memory=1100, step=30),
                                         {'coco/bbox_mAP': 0.4, 'coco/segm_mAP': 0.3,
                                          'data_time': 0.1, 'time': 0.2, 'step': 3}])
    (work / 'run.py').write_text("model = dict(type='MaskRCNN', backbone=dict("
                                 "type='ResNet', depth=50, norm_eval=True))\n")
    run = collect_work_dir(str(work))
    assert run['metrics'] == {'coco/bbox_mAP': 0.4, 'coco/segm_mAP': 0.3}
    assert run['s_per_step'] == pytest.approx(1.1)  # the first window is warm-up
    assert run['memory_mb'] == 1200 and run['steps'] == 30
    assert (run['backbone'], run['label']) == ('resnet50', 'ResNet-50')
    collected = collect([str(tmp_path)], log=lambda line: None)
    assert collected['resnet50']['maskrcnn']['mean'] == {'coco/bbox_mAP': 0.4,
                                                         'coco/segm_mAP': 0.3}


def test_collect_refuses_what_is_not_a_work_dir(tmp_path):
    with pytest.raises(CompareError, match='no mmengine log'):
        collect_work_dir(str(tmp_path))
    with pytest.raises(CompareError, match='no mmengine work dir at or under'):
        find_work_dirs([str(tmp_path)])
    with pytest.raises(CompareError, match='is not a folder'):
        find_work_dirs([str(tmp_path / 'missing')])
    write_log(tmp_path / 'w' / '20260101_000000', [dict(loss=1.0, time=1.0, step=1)])
    with pytest.raises(CompareError, match='no evaluation yet'):
        collect_work_dir(str(tmp_path / 'w'))
