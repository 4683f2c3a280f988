"""SIGKILL after a checkpoint, ``--resume``, and the final weights equal an uninterrupted run's.

One detection config (the Mask R-CNN demo, epoch-based, 2 dataloader workers) and one
segmentation config (the Semantic FPN demo, iteration-based, 2 workers), each shrunk to a tiny
backbone and a few demo images but otherwise as shipped, with validation between checkpoints.
"""
import glob
import hashlib
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from config_helpers import ROOT

import mmhire  # noqa: F401  (weights_only allow-list for mmengine checkpoints)

TINY_BACKBONE = "dict(_delete_=True, depths=[1, 1, 1, 1], embed_dims=[16, 32, 48, 64])"


def tiny_config(tmp_path, kind, demo_root):
    if kind == 'det':
        coco = osp.join(demo_root, 'demo_coco')
        body = f"""
_base_ = [{osp.join(ROOT, 'configs/demo/maskrcnn_hire_t_fpn_demo.py')!r}]
data_root = {coco + '/'!r}
# two loader workers (the demo config has none): their seeding must resume exactly too
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root, indices=2))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={osp.join(coco, 'annotations', 'instances_val.json')!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=2, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
                   dict(type='CosineAnnealingLR', T_max=2, begin=0, end=2, by_epoch=True,
                        convert_to_iter_based=True)]
"""
        final = 'epoch_2.pth'
    else:
        ade = osp.join(demo_root, 'demo_ade')
        body = f"""
_base_ = [{osp.join(ROOT, 'configs/demo/fpn_hire_t_demo_ade.py')!r}]
crop_size = (96, 96)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(batch_size=2, num_workers=2, persistent_workers=True,
                        dataset=dict(data_root={ade!r}, pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.75, 1.25), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]))
val_dataloader = dict(dataset=dict(data_root={ade!r}, indices=2))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=6, val_interval=3)
default_hooks = dict(checkpoint=dict(interval=3))
param_scheduler = [dict(type='PolyLR', power=0.9, begin=0, end=6, by_epoch=False)]
"""
        final = 'iter_6.pth'
    path = tmp_path / f'tiny_{kind}.py'
    path.write_text(body + f"model = dict(backbone=dict(arch={TINY_BACKBONE}),\n"
                           "             neck=dict(in_channels=[16, 32, 48, 64]))\n")
    return str(path), final


def train_cmd(cfg, work, *extra):
    return [sys.executable, 'tools/train.py', cfg, '--work-dir', work, *extra]


def env():
    return dict(os.environ, PYTHONWARNINGS='ignore')


def train(cfg, work, *extra):
    out = subprocess.run(train_cmd(cfg, work, *extra), cwd=ROOT, env=env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def train_and_kill_after_first_checkpoint(cfg, work, first_ckpt):
    pointer = osp.join(work, 'last_checkpoint')
    with open(osp.join(str(work) + '.stderr'), 'w') as err:
        proc = subprocess.Popen(train_cmd(cfg, work), cwd=ROOT, env=env(), stdout=err,
                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if osp.isfile(pointer) and open(pointer).read().strip().endswith(first_ckpt):
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            'the run ended before it could be killed: ' + open(err.name).read()[-3000:])
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job, dataloader workers included
        assert proc.wait() == -signal.SIGKILL


def snapshot(work):
    """Every file in the work dir, except the two mmengine rewrites by design on every run.

    ``last_checkpoint`` points at the newest checkpoint, and ``<config name>.py`` at the top of
    the work dir is the current run's config (each run also keeps its own copy in
    ``<timestamp>/vis_data/config.py``, which is checked).
    """
    files = {}
    for path in glob.glob(osp.join(work, '**', '*'), recursive=True):
        if osp.isfile(path) and osp.dirname(path) == work and (
                osp.basename(path) == 'last_checkpoint' or path.endswith('.py')):
            continue
        if osp.isfile(path):
            with open(path, 'rb') as f:
                files[osp.relpath(path, work)] = (hashlib.sha256(f.read()).hexdigest(),
                                                  os.stat(path).st_mtime_ns)
    return files


def assert_bitwise_equal(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_bitwise_equal(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['det', 'seg'])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(kind, demo_data, tmp_path):
    cfg, final = tiny_config(tmp_path, kind, demo_data)
    first_ckpt = 'epoch_1.pth' if kind == 'det' else 'iter_3.pth'

    straight = str(tmp_path / 'straight')
    train(cfg, straight)

    work = str(tmp_path / 'killed')
    train_and_kill_after_first_checkpoint(cfg, work, first_ckpt)
    assert not osp.exists(osp.join(work, final))
    before = snapshot(work)
    assert first_ckpt in before and any(p.endswith('.log') for p in before)
    assert any(p.endswith(osp.join('vis_data', 'config.py')) for p in before)

    resumed = train(cfg, work, '--resume')
    assert 'resumed' in resumed.stdout + resumed.stderr

    # earlier checkpoints and logs are untouched (same bytes, not rewritten)
    after = snapshot(work)
    for path, stamp in before.items():
        assert after.get(path) == stamp, f'{path} was changed by the resumed run'

    a = torch.load(osp.join(straight, final), weights_only=True)
    b = torch.load(osp.join(work, final), weights_only=True)
    assert_bitwise_equal(a['state_dict'], b['state_dict'], 'state_dict')
    assert_bitwise_equal(a['optimizer'], b['optimizer'], 'optimizer')
    assert_bitwise_equal(a['rng_state'], b['rng_state'], 'rng_state')
