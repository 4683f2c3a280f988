"""The command-line tools as users run them (subprocesses), on the demo data."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
from config_helpers import ROOT, demo_coco_options

DEMO_CFG = 'configs/demo/maskrcnn_hire_t_fpn_demo.py'
SEG_DEMO_CFG = 'configs/demo/fpn_hire_t_demo_ade.py'


TINY_ARCH = "dict(_delete_=True, depths=[1, 1, 1, 1], embed_dims=[64, 128, 320, 512])"


def write_tiny_config(tmp_path, base, demo_root):
    """A user-style config inheriting a demo config: depth-1 backbone, a few demo images."""
    if 'maskrcnn' in base:
        coco = osp.join(demo_root, 'demo_coco')
        ann = osp.join(coco, 'annotations', 'instances_val.json')
        body = f"""
data_root = {coco + '/'!r}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, indices=4))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, indices=2))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={ann!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=100)
"""
    else:
        ade = osp.join(demo_root, 'demo_ade')
        body = f"""
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={ade!r}))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={ade!r}))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2))
"""
    path = tmp_path / ('tiny_' + osp.basename(base))
    path.write_text(f"_base_ = [{osp.join(ROOT, base)!r}]\n"
                    f"model = dict(backbone=dict(arch={TINY_ARCH}))\n" + body)
    return str(path)


def run(args, **kw):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, **kw)


@pytest.mark.slow
def test_train_then_test_then_draw(demo_data, tmp_path):
    work = str(tmp_path / 'work')
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    out = run(['tools/train.py', cfg, '--work-dir', work])
    assert out.returncode == 0, out.stderr[-3000:]
    with open(osp.join(work, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    assert osp.isfile(ckpt) and ckpt.endswith('epoch_1.pth')

    # training again into the same dir refuses instead of overwriting the checkpoint
    again = run(['tools/train.py', cfg, '--work-dir', work])
    assert again.returncode != 0 and 'already holds checkpoints' in again.stderr
    assert osp.getmtime(ckpt) == osp.getmtime(osp.join(work, 'epoch_1.pth'))

    # --resume continues the same run (and needs one more epoch to do anything)
    resumed = run(['tools/train.py', cfg, '--work-dir', work, '--resume',
                   '--cfg-options', 'train_cfg.max_epochs=2'])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 1' in (resumed.stdout + resumed.stderr)
    assert osp.isfile(osp.join(work, 'epoch_2.pth')) and osp.isfile(ckpt)

    results, show = str(tmp_path / 'results.pkl'), str(tmp_path / 'show')
    tested = run(['tools/test.py', cfg, ckpt, '--work-dir', str(tmp_path / 'test'),
                  '--out', results, '--show-dir', show])
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert 'coco/bbox_mAP' in tested.stdout + tested.stderr
    assert 'coco/segm_mAP' in tested.stdout + tested.stderr
    with open(results, 'rb') as f:
        assert len(pickle.load(f)) == 2  # one result per test image
    assert len([f for f in os.listdir(show) if f.endswith('.jpg')]) == 2

    drawn = run(['tools/image_demo.py', osp.join(demo_data, 'demo_coco', 'val'), cfg, ckpt,
                 '--out-dir', str(tmp_path / 'png')])
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    pngs = sorted(os.listdir(tmp_path / 'png'))
    assert len(pngs) == 4 and all(p.endswith('.png') for p in pngs)

    # bad images: one clear line each, no stack trace
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'empty.jpg').write_bytes(b'')
    (bad / 'cut.jpg').write_bytes(open(osp.join(demo_data, 'demo_coco', 'val',
                                                sorted(os.listdir(osp.join(demo_data, 'demo_coco',
                                                                           'val')))[0]),
                                       'rb').read()[:40])
    for name, message in [('empty.jpg', 'is an empty file (0 bytes), not an image'),
                          ('cut.jpg', 'is not a readable image (truncated or corrupted')]:
        out = run(['tools/image_demo.py', str(bad / name), cfg, ckpt, '--out-dir', str(bad)])
        assert out.returncode != 0 and message in out.stderr, out.stderr[-3000:]
        assert 'Traceback' not in out.stderr
    # a model built for 4-channel input given RGB images: the backbone's own message
    out = run(['tools/image_demo.py', osp.join(demo_data, 'demo_coco', 'val'), cfg, ckpt,
               '--out-dir', str(bad), '--cfg-options', 'model.backbone.in_channels=4'])
    assert out.returncode != 0 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert 'HireMLP expects 4 input channels (in_channels=4), got 3' in out.stderr


def near_tie_pixels(model, img_path, rel=1e-4):
    """Pixels of ``img_path`` where ``model``'s (the unfused one's) two best logits are within
    ``rel`` of its largest logit: the only pixels where float rounding, a fused model's
    included, may pick the other label."""
    from mmseg.apis import inference_model
    logits = inference_model(model, img_path).seg_logits.data
    top2 = logits.topk(2, dim=0).values
    return ((top2[0] - top2[1]) <= rel * logits.abs().max()).numpy()


def assert_equal_but_ties(a, b, ties, what):
    differ = a != b
    if differ.ndim == 3:  # a drawn picture: a pixel differs if any channel does
        differ = differ.any(axis=-1)
    assert differ.shape == ties.shape, (what, differ.shape, ties.shape)
    assert not (differ & ~ties).any(), (
        f'{what}: {int((differ & ~ties).sum())} pixels differ where the logits do not tie')


@pytest.mark.slow
def test_segmentation_train_test_and_draw(demo_data, tmp_path):
    ade = osp.join(demo_data, 'demo_ade')
    cfg = write_tiny_config(tmp_path, SEG_DEMO_CFG, demo_data)
    work = str(tmp_path / 'work')
    out = run(['tools/train.py', cfg, '--work-dir', work])
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = osp.join(work, 'iter_2.pth')
    tested = run(['tools/test.py', cfg, ckpt, '--work-dir', str(tmp_path / 't'),
                  '--out', str(tmp_path / 'labels')])
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert 'mIoU' in tested.stdout + tested.stderr
    assert len(os.listdir(tmp_path / 'labels')) == 4
    # --fuse folds the backbone's BatchNorms: the same label maps
    fused = run(['tools/test.py', cfg, ckpt, '--work-dir', str(tmp_path / 'tf'), '--fuse',
                 '--out', str(tmp_path / 'labels_fused')])
    assert fused.returncode == 0, fused.stderr[-3000:]
    assert 'fused 1 HireMLP backbone(s)' in fused.stdout + fused.stderr
    import numpy as np
    from PIL import Image
    from mmseg.apis import init_model
    unfused = init_model(cfg, ckpt, device='cpu')
    val_dir = osp.join(ade, 'images', 'validation')
    images = {osp.splitext(f)[0]: osp.join(val_dir, f) for f in os.listdir(val_dir)}
    ties = {stem: near_tie_pixels(unfused, path) for stem, path in images.items()}
    for name in os.listdir(tmp_path / 'labels'):
        a = np.array(Image.open(tmp_path / 'labels' / name))
        b = np.array(Image.open(tmp_path / 'labels_fused' / name))
        assert_equal_but_ties(a, b, ties[osp.splitext(name)[0]], f'--fuse labels of {name}')
    first = sorted(images)[0]
    img = images[first]
    drawn = run(['tools/image_demo.py', img, cfg, ckpt, '--out-dir', str(tmp_path / 'png')])
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert len(os.listdir(tmp_path / 'png')) == 1
    # image_demo --fuse: the same picture (label overlay), but where the logits tie
    drawn = run(['tools/image_demo.py', img, cfg, ckpt, '--out-dir', str(tmp_path / 'pngf'),
                 '--fuse'])
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    name = os.listdir(tmp_path / 'png')[0]
    a = np.array(Image.open(tmp_path / 'png' / name))
    b = np.array(Image.open(tmp_path / 'pngf' / name))
    assert_equal_but_ties(a, b, ties[first], f'--fuse picture {name}')


@pytest.mark.slow
def test_dist_train_and_test_two_processes_on_cpu(demo_data, tmp_path):
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, PORT='29517', PYTHONWARNINGS='ignore',
               OMP_NUM_THREADS='1')
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    out = subprocess.run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    logs = out.stdout + out.stderr
    assert 'world_size: 2' in logs or 'Distributed launcher: pytorch' in logs
    # 4 images, 2 per process per step, 2 processes: one iteration per epoch
    assert 'Epoch(train) [1][1/1]' in logs
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    # and dist_test.sh evaluates the checkpoint on two processes (2 val images, one each)
    out = subprocess.run(['bash', 'tools/dist_test.sh', cfg, osp.join(work, 'epoch_1.pth'), '2',
                          '--work-dir', str(tmp_path / 'test')],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert 'Epoch(test) [1/1]' in out.stdout + out.stderr
    assert 'coco/bbox_mAP' in out.stdout + out.stderr


def test_missing_dataset_message(tmp_path):
    out = run(['tools/train.py', 'configs/maskrcnn_hire_s_fpn_1x_coco.py', '--work-dir',
               str(tmp_path), '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/x/'])
    assert out.returncode == 1
    err = out.stderr
    assert 'the dataset this config reads is missing' in err
    assert 'annotations/instances_train2017.json' in err and 'cocodataset.org' in err
    assert 'python -m mmhire.datasets.demo_data' in err
    assert 'Traceback' not in err
    seg = run(['tools/train.py', 'configs/upernet_hire_s_512x512_80k_ade20k.py'])
    assert seg.returncode == 1 and 'ADEChallengeData2016' in seg.stderr
    assert 'Traceback' not in seg.stderr


def test_missing_pretrained_message(demo_data, tmp_path):
    out = run(['tools/train.py', 'configs/maskrcnn_hire_s_fpn_1x_coco.py', '--work-dir',
               str(tmp_path), '--cfg-options',
               'model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_small.pth',
               *demo_coco_options(demo_data)])
    assert out.returncode == 1
    assert 'pretrained backbone checkpoint is missing: checkpoints/hire_mlp_small.pth' in out.stderr
    assert 'model.backbone.init_cfg=None' in out.stderr
    assert 'Traceback' not in out.stderr


def test_misspelled_backbone_argument_message(demo_data, tmp_path):
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    out = run(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'),
               '--cfg-options', 'model.backbone.frozen_stage=1'])
    assert out.returncode != 0 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert "unknown argument(s) 'frozen_stage' (did you mean 'frozen_stages'?)" in out.stderr


def test_empty_dataset_file_message(demo_data, tmp_path):
    import shutil
    coco = tmp_path / 'coco'
    shutil.copytree(osp.join(demo_data, 'demo_coco'), coco)
    victim = sorted(os.listdir(coco / 'train'))[0]
    (coco / 'train' / victim).write_bytes(b'')
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    out = run(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
               f'train_dataloader.dataset.data_root={coco}/'])
    assert out.returncode != 0 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert 'empty files (0 bytes)' in out.stderr and victim in out.stderr


def test_missing_checkpoint_and_config_messages(tmp_path):
    out = run(['tools/test.py', DEMO_CFG, str(tmp_path / 'nope.pth')])
    assert out.returncode == 1 and 'checkpoint not found' in out.stderr
    out = run(['tools/train.py', 'configs/nope.py'])
    assert out.returncode == 1 and 'config file not found' in out.stderr
    assert 'Traceback' not in out.stderr


def test_get_flops_on_a_config():
    out = run(['tools/get_flops.py', '--config', 'configs/retinanet_hire_t_fpn_1x_coco.py',
               '--shape', '128', '160'])
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'retinanet_hire_t_fpn_1x_coco' in out.stdout and 'GMACs' in out.stdout


@pytest.mark.slow
def test_amp_train_test_and_draw_on_cpu(demo_data, tmp_path):
    from mmhire.engine import cpu_supports_bf16
    said = ('backbone and neck' if cpu_supports_bf16() else 'no native bf16 instructions')
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    work = str(tmp_path / 'work')
    out = run(['tools/train.py', cfg, '--work-dir', work, '--amp'])
    assert out.returncode == 0, out.stderr[-3000:]
    assert '--amp: ' in out.stdout and said in out.stdout
    assert 'AutocastOptimWrapper' in open(osp.join(work, osp.basename(cfg))).read()
    ckpt = osp.join(work, 'epoch_1.pth')
    tested = run(['tools/test.py', cfg, ckpt, '--work-dir', str(tmp_path / 'test'), '--amp'])
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert said in tested.stdout and 'coco/bbox_mAP' in tested.stdout + tested.stderr
    drawn = run(['tools/image_demo.py', osp.join(demo_data, 'demo_coco', 'val'), cfg, ckpt,
                 '--out-dir', str(tmp_path / 'png'), '--amp'])
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert len(os.listdir(tmp_path / 'png')) == 4


@pytest.mark.slow
def test_mmengine_compile_trains_and_evaluates(demo_data, tmp_path):
    """``compile`` in a config: mmengine hands the model's ``train_step`` to torch.compile;
    it trains and evaluates. The smallest model that still compiles the backbone inside a
    Runner: the Semantic FPN demo config, depth-1 backbone, one step, one validation image.
    The backend is ``aot_eager``: dynamo captures the whole train step and AOTAutograd traces
    its backward, as with ``compile=True``, without inductor's C++ code generation for the
    neck, head and loss (660 s on 2 cores; mmseg's code, not ours). Inductor against eager:
    the Hire modules in test_hire_mlp_compile.py, the backbone in test_compile_cost_table."""
    cfg = write_tiny_config(tmp_path, SEG_DEMO_CFG, demo_data)
    out = run(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
               'compile.backend=aot_eager', 'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
               'default_hooks.checkpoint.interval=1', 'val_dataloader.dataset.indices=1'])
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert 'Model has been "compiled"' in log and 'mIoU' in log


def test_amp_bad_combinations_messages(demo_data, tmp_path):
    import torch
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    cases = [(['--amp', '--cfg-options', 'optim_wrapper.type=OptimWrapperDict'],
              "this config uses 'OptimWrapperDict', which --amp cannot stand in for")]
    if not torch.cuda.is_available():
        cases += [(['--cfg-options', 'optim_wrapper.type=AmpOptimWrapper'],
                   "type='AutocastOptimWrapper' (bf16 autocast, from mmhire)"),
                  (['--amp', '--cfg-options', 'optim_wrapper.dtype=float16'],
                   "runs in bfloat16 only: leave dtype out or set dtype='bfloat16'")]
    for i, (args, message) in enumerate(cases):
        out = run(['tools/train.py', cfg, '--work-dir', str(tmp_path / f'w{i}'), *args])
        assert out.returncode == 1 and message in out.stderr, out.stderr[-3000:]
        assert 'Traceback' not in out.stderr


def test_persistent_workers_without_workers_message(demo_data, tmp_path):
    cfg = write_tiny_config(tmp_path, DEMO_CFG, demo_data)
    out = run(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
               'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=True'])
    assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-3000:]
    assert ('val_dataloader has persistent_workers=True but num_workers=0' in out.stderr
            and 'val_dataloader.persistent_workers=False' in out.stderr)


@pytest.mark.slow
def test_demo_runs_both_tasks_end_to_end(tmp_path):
    work = tmp_path / 'work'
    out = run(['tools/demo.py', '--task', 'all', '--data-dir', str(tmp_path / 'data'),
               '--work-dir', str(work), '--num-train', '4', '--num-val', '2', '--epochs', '1',
               '--iters', '2'], timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    for line in ('[demo] bbox mAP', '[demo] segm mAP', '[demo] mIoU',
                 '[demo] val shapes at score >= 0.5:'):
        assert line in out.stdout
    # the per-shape count reads the val predictions the evaluation saved
    assert osp.getsize(work / 'det' / 'val_predictions.pkl') > 0
    for task in ('det', 'seg'):
        assert osp.getsize(work / task / 'demo_predictions.png') > 0
    # a bad option is one line, not a traceback
    bad = run(['tools/demo.py', '--epochs', '0'])
    assert bad.returncode == 2 and '--epochs must be at least 1' in bad.stderr


def test_demo_refuses_data_from_an_older_generator(tmp_path):
    """A demo folder from an older mmhire stays as it is; the error says how to remake it."""
    import json
    from mmhire.datasets.demo_data import MARKER
    old = tmp_path / 'data' / 'demo_coco'
    old.mkdir(parents=True)
    settings = dict(kind='coco', num_train=300, num_val=50, size=256, seed=0)  # no version
    (old / MARKER).write_text(json.dumps(settings))
    (old / 'keep.txt').write_text('mine')
    out = run(['tools/demo.py', '--data-dir', str(tmp_path / 'data'),
               '--work-dir', str(tmp_path / 'work')])
    assert out.returncode == 1
    assert 'Traceback' not in out.stderr
    assert 'other settings' in out.stderr
    assert f'--kind coco --out {tmp_path / "data"} --overwrite' in out.stderr
    assert (old / 'keep.txt').read_text() == 'mine'
    assert json.loads((old / MARKER).read_text()) == settings


def test_demo_offers_no_overwrite_for_a_folder_it_did_not_write(tmp_path):
    foreign = tmp_path / 'data' / 'demo_coco'
    foreign.mkdir(parents=True)
    (foreign / 'mine.txt').write_text('mine')
    out = run(['tools/demo.py', '--data-dir', str(tmp_path / 'data'),
               '--work-dir', str(tmp_path / 'work')])
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert 'was not written by this tool' in out.stderr and 'remake it' not in out.stderr
    assert (foreign / 'mine.txt').read_text() == 'mine'


@pytest.mark.parametrize('config,key,length', [(DEMO_CFG, 'max_epochs', 3),
                                               (SEG_DEMO_CFG, 'max_iters', 50)])
def test_demo_schedule_follows_epochs_and_iters(config, key, length):
    """--epochs / --iters move the end of the learning-rate schedule and the last checkpoint too."""
    from mmengine.config import Config

    from mmhire.apis import schedule_options
    cfg = Config.fromfile(osp.join(ROOT, config))
    old = cfg.train_cfg[key]
    cfg.merge_from_dict(schedule_options(osp.join(ROOT, config), key, length))
    assert cfg.train_cfg[key] == length
    assert cfg.default_hooks.checkpoint.interval == length
    by_epoch = key == 'max_epochs'
    main = [s for s in cfg.param_scheduler if s.get('by_epoch', True) == by_epoch]
    assert main and all(s.end == length for s in main)
    assert all(s.get('T_max', length) == length for s in main)
    # a warm-up counted in iterations keeps its length
    assert all(s.end != old for s in cfg.param_scheduler if s.get('by_epoch', True) != by_epoch)
    if by_epoch:
        assert [s.end for s in cfg.param_scheduler if not s.get('by_epoch', True)] == [50]
