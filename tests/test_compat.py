"""mmengine checkpoints load on torch >= 2.6 with weights_only still on (mmhire.compat)."""
import os
import pickle

import pytest
import torch
import torch.nn as nn
from conftest import save_code_running_checkpoint
from mmengine.model import BaseModel
from mmengine.runner import Runner

import mmhire  # noqa: F401  (installs the allow-list)


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)  # default_collate stacked the batch
        if mode == 'loss':
            return dict(loss=((out.squeeze(-1) - labels) ** 2).mean())
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'), palette=[(1, 2, 3)])

    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(2, generator=g)
        return dict(inputs=x, labels=x.sum())


def make_runner(work_dir, max_iters, resume=False, load_from=None):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(),
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=4, num_workers=0, collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine',
        experiment_name=f'toy_{max_iters}_{resume}',
    )


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('toy')
    runner = make_runner(work_dir, max_iters=4)
    runner.train()
    return work_dir, runner


def test_runner_checkpoint_loads_with_weights_only(trained):
    work_dir, _ = trained
    ckpt = torch.load(os.path.join(work_dir, 'iter_4.pth'), weights_only=True)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(ckpt)
    assert ckpt['meta']['iter'] == 4


def test_resume_continues_from_the_checkpoint(trained):
    work_dir, first = trained
    runner = make_runner(work_dir, max_iters=6, resume=True)
    runner.train()
    assert runner.iter == 6
    # the scheduler state came back: one milestone passed, lr divided by 10
    assert runner.optim_wrapper.get_lr()['lr'][0] == pytest.approx(0.001)
    assert os.path.exists(os.path.join(work_dir, 'iter_6.pth'))
    assert os.path.exists(os.path.join(work_dir, 'iter_4.pth'))  # earlier checkpoints are kept


def test_load_from_runner_checkpoint(trained, tmp_path):
    work_dir, first = trained
    runner = make_runner(tmp_path, max_iters=1, load_from=os.path.join(work_dir, 'iter_4.pth'))
    runner.load_or_resume()
    saved = torch.load(os.path.join(work_dir, 'iter_4.pth'), weights_only=True)['state_dict']
    assert torch.equal(runner.model.linear.weight, saved['linear.weight'])


def test_arbitrary_pickles_are_still_refused(tmp_path):
    marker, path = tmp_path / 'ran', tmp_path / 'evil.pth'
    save_code_running_checkpoint(path, marker, {'state_dict': {}})
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(path)  # torch's default, weights_only=True, with our allow-list in place
    assert not marker.exists()


@pytest.mark.parametrize('target,name', [('HistoryBuffer', '__init__'), ('ndarray', 'tofile'),
                                         ('HistoryBuffer', 'register_statistics')])
def test_getattr_is_limited_to_history_buffer_statistics(tmp_path, target, name):
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    obj = {'HistoryBuffer': HistoryBuffer, 'ndarray': np.ndarray}[target]

    class Lookup:
        def __reduce__(self):
            return (getattr, (obj, name))

    path = tmp_path / 'lookup.pth'
    torch.save({'x': Lookup()}, path)
    with pytest.raises(pickle.UnpicklingError, match=f'refusing getattr.*{name}'):
        torch.load(path)
