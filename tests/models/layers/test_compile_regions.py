"""Compile regions of Hire blocks (mmhire/models/layers/compile_regions.py): the functional
BatchNorm that a training region runs, and a training block as a region against the eager
block, stochastic depth included."""
import copy

import pytest
import torch
import torch.nn as nn
from numeric import assert_rel_close, randomize_norms

from mmhire.models.layers.compile_regions import batch_norm_with_stats
from mmhire.models.layers.hire_block import HireBlock


def test_batch_norm_with_stats_equals_batch_norm():
    torch.manual_seed(0)
    norm = randomize_norms(nn.BatchNorm2d(6, momentum=1.0)).train()
    x = torch.randn(3, 6, 5, 7) * 3 + 1
    out, mean, var = batch_norm_with_stats(norm, x)
    before = copy.deepcopy(norm.state_dict())
    assert_rel_close(out, norm(x), 1e-5)
    # momentum 1: the running statistics become the batch's, unbiased variance
    assert_rel_close(mean, norm.running_mean, 1e-5)
    assert_rel_close(var, norm.running_var, 1e-5)
    assert not mean.requires_grad and not var.requires_grad
    norm.load_state_dict(before)
    with pytest.raises(ValueError, match='more than 1 value per channel'):
        batch_norm_with_stats(norm, torch.randn(1, 6, 1, 1))


def test_training_block_region_equals_eager_block():
    """Two training blocks as one region, against the eager blocks. aot_eager draws
    stochastic depth's masks from the eager generator: with one seed the region and the eager
    blocks drop the same images."""
    torch.manual_seed(0)
    # two blocks alike (torch inlines a region that runs once)
    eager = randomize_norms(nn.Sequential(
        *(HireBlock(8, region_size=3, shift=2, drop_path=0.5) for _ in range(2)))).train()
    block = copy.deepcopy(eager)
    targets = []

    def backend(gm, example_inputs):  # aot_eager, noting what the graph calls
        targets.extend(n.target for n in gm.graph.nodes)
        return torch._dynamo.lookup_backend('aot_eager')(gm, example_inputs)

    compiled = torch.compile(block, backend=backend, fullgraph=True)
    x = torch.randn(4, 8, 10, 11)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(1)
    out_a = eager(xa)
    torch.manual_seed(1)
    out_b = compiled(xb)
    assert torch.ops.higher_order.invoke_subgraph in targets  # the block ran as a region
    assert_rel_close(out_a, out_b, 1e-5)
    weight = torch.randn_like(out_a)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    assert_rel_close(xa.grad, xb.grad, 1e-4)
    scale = max(p.grad.abs().max() for p in eager.parameters())
    for (name, pa), pb in zip(eager.named_parameters(), block.parameters()):
        assert_rel_close(pa.grad, pb.grad, 1e-4, scale), name
    for (name, ba), bb in zip(eager.named_buffers(), block.buffers()):
        assert_rel_close(ba.float(), bb.float(), 1e-5), name
    torch._dynamo.reset()
