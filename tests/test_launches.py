"""mmhire.analysis.launches: counting dispatched operators (a proxy for kernel launches), and
``tools/benchmark.py --count-launches``."""
import importlib.util
import os.path as osp
import subprocess
import sys
from collections import Counter

import pytest
import torch
from config_helpers import ROOT

from mmhire import HireMLP
from mmhire.analysis.launches import (LaunchRow, count_launches, count_model, count_ops,
                                      format_table, per_image)
from mmhire.models.layers.branch_folding import folds_weights
from mmhire.models.layers.hire_module import HireModule


def test_views_and_allocations_are_not_counted():
    x = torch.randn(3, 4)
    assert count_launches(lambda: (x + 1).relu().t()) == 2  # add, relu; t is a view
    assert count_launches(lambda: x.view(4, 3).permute(1, 0).expand(2, 3, 4).detach()) == 0
    assert count_launches(lambda: (torch.empty(3), torch.empty_like(x), x.new_empty(2),
                                   torch.empty_strided((2, 2), (1, 2)))) == 0
    # fills launch a kernel on a GPU: counted
    assert count_launches(lambda: (torch.zeros(3), torch.ones_like(x), torch.arange(4))) == 3
    assert count_launches(lambda: (x.shape, x.stride(), x.is_contiguous(), x.numel())) == 0
    assert count_launches(lambda: x.add_(1)) == 1  # in place: counted
    counter = count_ops(lambda: x.t().contiguous())  # a copy, after a view
    assert counter.ops == Counter({'aten.clone.default': 1})
    assert counter.skipped == Counter({'aten.t.default': 1})


def test_backward_is_counted():
    w = torch.randn(3, 4, requires_grad=True)

    def step():
        (w * 2).sum().backward()

    counter = count_ops(step)
    # forward: mul, sum; backward: the seed (ones_like), then mul (sum's backward is an expand)
    assert counter.ops == Counter({'aten.mul.Tensor': 2, 'aten.sum.default': 1,
                                   'aten.ones_like.default': 1})
    assert counter.total == 4 and w.grad is not None


def test_count_model_and_the_table():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    forward, train = count_model(model, (8, 10), batches=(1, 2, 4))
    assert sorted(forward) == sorted(train) == [1, 2, 4]
    assert len(set(forward.values())) == 1 and len(set(train.values())) == 1  # flat
    assert train[1] > forward[1]
    assert all(p.grad is None for p in model.parameters())  # cleared after the count
    assert per_image({1: 10, 2: 13, 8: 31}) == [3, 3]
    rows = [LaunchRow('a', 'Model A', {1: 10, 2: 13, 8: 32}, {1: 20, 2: 20, 8: 20}),
            LaunchRow('b', 'Model B', {1: 7, 2: 7, 8: 7}, None)]
    table = format_table(rows).splitlines()
    assert table[0].startswith('| backbone | forward b1 | forward b2 | forward b8 | forward: '
                               'each extra image adds (1->2/2->8) | training step b1 |')
    assert table[2] == '| Model A | 10 | 13 | 32 | 3 / 3.2 | 20 | 20 | 20 | 0 / 0 |'
    assert table[3] == '| Model B | 7 | 7 | 7 | 0 / 0 | - | - | - | - |'
    assert format_table(rows, train=False).splitlines()[3] == '| Model B | 7 | 7 | 7 | 0 / 0 |'


def test_benchmark_count_launches_table():
    out = subprocess.run([sys.executable, 'tools/benchmark.py', '--count-launches', '--size', '64',
                          '64', '--threads', '1', '--models', 'hire_s_fused', 'resnet50'],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert 'at Bx3x64x64' in out.stdout
    header = next(line for line in lines if line.startswith('| backbone |'))
    for column in ('forward b1', 'forward b2', 'forward b8', 'training step b8',
                   'each extra image adds (1->2/2->8)'):
        assert column in header
    rows = {line.split(' | ')[0][2:]: line.split(' | ')[1:] for line in lines
            if line.startswith('| ') and not line.startswith('| backbone')}
    assert set(rows) == {'HireMLP-S (fast, fused)', 'ResNet-50'}
    assert all(int(c) > 0 for c in rows['ResNet-50'][:3] + rows['ResNet-50'][4:7])
    assert rows['HireMLP-S (fast, fused)'][4:] == ['-'] * 3 + ['- |']  # no training step
    assert 'matmul rate' not in out.stdout and 'median' not in out.stdout  # nothing timed


def test_benchmark_count_launches_options(capsys):
    spec = importlib.util.spec_from_file_location('benchmark', osp.join(ROOT, 'tools',
                                                                        'benchmark.py'))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    args = benchmark.parse_args(['--count-launches'])
    assert tuple(args.size) == (256, 320) and args.count_batches == [1, 2, 8]
    assert args.models == ['hire_s_fast', 'hire_s_plain', 'hire_s_fused', 'resnet50', 'swin_t']
    assert tuple(benchmark.parse_args([]).size) == (800, 1216)  # the timing default stays
    args = benchmark.parse_args(['--count-launches', '--size', '32', '48', '--count-batches',
                                 '4', '1'])
    assert tuple(args.size) == (32, 48) and args.count_batches == [1, 4]
    # the timing extras are refused, as are models that are not eager
    for argv, message in ((['--compile'], 'leave out --compile'),
                          (['--models', 'resnet50+compile'], 'counts eager models'),
                          (['--count-batches', '0'], 'at least 1')):
        with pytest.raises(SystemExit) as exit_info:
            benchmark.parse_args(['--count-launches', *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


# Every Hire module of this arch folds proj and the branch weights at 224x256 (stage maps
# 56x64, 28x32, 14x16, 7x8: even the last stage's 56 positions > C (p + 1) = 16 x 3, the size
# rule of the fast path); checked below (``folds_weights``), not assumed
FLAT_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[16, 16, 16, 16])
FLAT_SIZE = (224, 256)


def hire_counts(fast):
    """``{batch: Counter of launches per operator}`` of a forward and a training step of the
    tiny HireMLP at batch 1, 2 and 3."""
    torch.manual_seed(0)
    torch.set_num_threads(1)  # counts do not depend on it; a shared CPU runs one thread faster
    model = HireMLP(arch=FLAT_ARCH, fast=fast)
    seen = []

    def check(module, args):
        seen.append(folds_weights(module, *args[0].shape[2:]))
    hooks = [m.register_forward_pre_hook(check) for m in model.modules()
             if isinstance(m, HireModule)]
    forward, train = count_model(model, FLAT_SIZE, batches=(1, 2, 3), per_op=True)
    for hook in hooks:
        hook.remove()
    assert seen and all(seen)  # every module folds on the fast path
    return forward, train


def assert_flat(counts, what):
    """No launch per image: equal totals at batch 2 and 3, and no more at batch 1 (PyTorch's
    matrix products treat a single image as a 2-D product, which spares a few layout copies
    in the backward that a batch needs once, whatever its size). The message names the
    operators that differ."""
    totals = {b: sum(c.values()) for b, c in counts.items()}
    extra = {b: {op: counts[b][op] - counts[2][op] for op in counts[b] | counts[2]
                 if counts[b][op] != counts[2][op]} for b in counts if b != 2}
    assert totals[3] == totals[2] and totals[1] <= totals[2], (
        f'{what} launches per batch size: {totals}; operators that differ from batch 2: '
        f'{extra}')


def test_plain_path_launch_count_is_flat_in_batch():
    forward, train = hire_counts(fast=False)
    assert_flat(forward, 'forward')
    assert_flat(train, 'training-step')


def test_default_path_launch_count_is_flat_in_batch():
    """The default (fast) path dispatches the same operators whatever the batch: no per-image
    loop, so a GPU launches as many kernels for 3 images as for 2. It dispatches more than the
    plain path (folding the per-image weights and reading the branch means off the hidden
    maps are small operators; docs/speed.md has the counts): this bounds how many more, just
    above the ratio measured on this arch on 2026-12-06 (1.27x in a forward, 1.50x in a
    training step; 1.38x and 1.64x before), so that a change that adds launches shows up
    here."""
    forward, train = hire_counts(fast=True)
    assert_flat(forward, 'forward')
    assert_flat(train, 'training-step')
    plain_forward, plain_train = hire_counts(fast=False)
    for mode, fast_counts, plain_counts, bound in (
            ('forward', forward, plain_forward, 1.3),
            ('training step', train, plain_train, 1.52)):
        fast_total, plain_total = (sum(fast_counts[2].values()), sum(plain_counts[2].values()))
        assert fast_total <= bound * plain_total, (
            f'{mode}: default {fast_total}, plain {plain_total}')
