"""RNGStateHook: an interrupted and resumed run ends bitwise equal to an uninterrupted one.

Fast in-process version with a toy model whose training draws from every generator: dropout
(torch), augmentation in the dataset (Python, NumPy, torch, in dataloader workers or not) and a
validation pass between checkpoints that draws as well. The SIGKILL version with real detection
and segmentation configs is tests/tools/test_exact_resume.py.
"""
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mmhire  # noqa: F401  (registers the hook)
from mmhire.engine import get_rng_state, set_rng_state


class Interrupted(Exception):
    pass


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 1))

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.net(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - labels) ** 2).mean())
        return [dict(err=float((o - t).abs())) for o, t in zip(out, labels)]


class RandomAugmentDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a',))

    def __len__(self):
        return 12

    def __getitem__(self, i):
        x = torch.full((4,), float(i))
        x = x * random.uniform(0.5, 1.5) + float(np.random.randn()) + torch.rand(4)
        return dict(inputs=x, labels=x.sum() / 10)


class ToyMetric(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend(s['err'] for s in data_samples)

    def compute_metrics(self, results):
        return dict(err=float(np.mean(results)))


def make_runner(work_dir, by_epoch, num_workers, worker_init, *, hook=True, resume=False,
                interrupt_at=None, persistent_workers=False):
    from mmengine.hooks import Hook

    class _Interrupt(Hook):
        priority = 'LOWEST'  # after CheckpointHook

        def after_train_epoch(self, runner):
            if by_epoch and runner.epoch + 1 == interrupt_at:
                raise Interrupted

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if not by_epoch and runner.iter + 1 == interrupt_at:
                raise Interrupted

    loader = dict(dataset=RandomAugmentDataset(), batch_size=4, num_workers=num_workers,
                  persistent_workers=persistent_workers, collate_fn=dict(type='default_collate'))
    if worker_init:
        loader['worker_init_fn'] = dict(type='seed_worker_from_torch')
    train_loader = dict(loader, sampler=dict(type='DefaultSampler' if by_epoch
                                             else 'InfiniteSampler', shuffle=True))
    val_loader = dict(loader, sampler=dict(type='DefaultSampler', shuffle=False))
    train_cfg = (dict(by_epoch=True, max_epochs=4, val_interval=1) if by_epoch
                 else dict(by_epoch=False, max_iters=12, val_interval=3))
    custom_hooks = [dict(type='RNGStateHook')] if hook else []
    if interrupt_at:
        custom_hooks.append(_Interrupt())
    torch.manual_seed(3)  # the model is built here, before the Runner seeds the generators
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=train_loader, val_dataloader=val_loader,
        val_cfg=dict(), val_evaluator=dict(type=ToyMetric),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1 if by_epoch else 3,
                                           by_epoch=by_epoch),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=custom_hooks, randomness=dict(seed=3), resume=resume,
        default_scope='mmengine',
        experiment_name=f'rng_{by_epoch}_{num_workers}_{resume}_{interrupt_at}_{os.getpid()}')


def train_interrupted_then_resumed(tmp_path, by_epoch, num_workers, worker_init, hook=True):
    straight = make_runner(tmp_path / 'straight', by_epoch, num_workers, worker_init, hook=hook)
    straight.train()
    work = tmp_path / 'interrupted'
    with pytest.raises(Interrupted):
        make_runner(work, by_epoch, num_workers, worker_init, hook=hook,
                    interrupt_at=2 if by_epoch else 6).train()
    resumed = make_runner(work, by_epoch, num_workers, worker_init, hook=hook, resume=True)
    resumed.train()
    return straight.model.state_dict(), resumed.model.state_dict()


@pytest.mark.parametrize('by_epoch,num_workers,worker_init', [
    (True, 0, False), (True, 2, True), (True, 2, False), (False, 0, False), (False, 2, True)])
def test_resumed_run_is_bitwise_equal(tmp_path, by_epoch, num_workers, worker_init):
    straight, resumed = train_interrupted_then_resumed(tmp_path, by_epoch, num_workers,
                                                       worker_init)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_without_the_hook_the_resumed_run_differs(tmp_path):
    # The control: it shows the toy run draws enough randomness for the test above to matter.
    straight, resumed = train_interrupted_then_resumed(tmp_path, True, 0, False, hook=False)
    assert any(not torch.equal(straight[k], resumed[k]) for k in straight)


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    state = get_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save(dict(rng_state=state), tmp_path / 'c.pth')
    loaded = torch.load(tmp_path / 'c.pth', weights_only=True)['rng_state']
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_warns_about_persistent_workers_and_old_checkpoints(tmp_path):
    runner = make_runner(tmp_path / 'w', True, 2, False, persistent_workers=True)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'RNGStateHook')
    hook.before_train(runner)
    hook.after_load_checkpoint(runner, dict(meta={}))  # a checkpoint saved without the hook
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'Set train_dataloader.persistent_workers=False' in log
    assert 'holds no generator state' in log
