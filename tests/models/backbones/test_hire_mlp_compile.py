"""torch.compile and HireMLP: one graph (fullgraph=True), the eager model's outputs and
gradients.

- The backbone's training step in float64 as dynamo and AOTAutograd record it (every
  parameter's gradient); in eval, its repeated blocks share one nested compile region. (The
  backbone under inductor with static sizes, in eval, against eager: the compile-cost tool's
  test, tests/tools/test_benchmark.py::test_compile_cost_table, which compiles it anyway.)
- The backbone with dynamic=True in eval, recorded by dynamo and AOTAutograd (``aot_eager``):
  one graph runs several input sizes, its size arithmetic (pads, regions, crops) as recorded.
- The Hire modules under inductor with symbolic sizes: dynamic=True in eval and a dynamic batch
  in a float64 training step. Inductor's code for symbolic sizes is where compiles of this
  formulation spend their time (sympy); on the modules alone it costs a fraction of the
  backbone's, which took 338 s (eval) and 249 s (training) alone on 2 cores in a slow spell
  (2026-12-05).
"""
import copy

import pytest
import torch
import torch._functorch.config  # noqa: F401  (torch.compile imports it late)
import torch._inductor.config  # noqa: F401
import torch.nn as nn
from numeric import assert_rel_close, draw_away_from_kinks, randomize_norms

from mmhire import HireMLP
from mmhire.models.layers import HireModule

# Five blocks (compiling takes time per block): stage 1 (region size 4) with shifts 0 and 2,
# one block in each other stage (region sizes 3, 3, 2); stage 4 keeps proj unfolded in the
# graph (graph_fold's default), the others fold it
COMPILE_ARCH = dict(depths=[2, 1, 1, 1], embed_dims=[8, 16, 24, 32])
# Stage 1's blocks 3 and 4 are blocks 1 and 2 again (shifts 0 and 2) with other weights and
# stochastic depth rates: in eval, torch.compile stamps out the code it compiled for those
REPEATED_ARCH = dict(COMPILE_ARCH, depths=[4, 1, 1, 1])
# Training compiles every block (no regions): one per stage. A recorded graph gathers for every
# shift, 0 included (the shift is a constant of the index), so shifted blocks add no new code.
TRAIN_ARCH = dict(COMPILE_ARCH, depths=[1, 1, 1, 1])


def make_model(arch=COMPILE_ARCH, **kwargs):
    model = HireMLP(arch=arch, **kwargs)
    model.init_weights()
    return randomize_norms(model)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    # dynamic=True must mean one graph for every size: a recompile is an error here. The
    # on-disk caches stay out: an entry compiled earlier for a fixed size can pin a dimension.
    # Float attributes (BatchNorm's eps and momentum) are constants: under dynamic=True dynamo
    # first traces them as symbols, fails to turn them into tensors and restarts the whole
    # analysis with them specialized (measured: 87 s of a 490 s compile); specialize them at once.
    with torch._dynamo.config.patch(error_on_recompile=True, specialize_float=True), \
            torch._functorch.config.patch(enable_autograd_cache=False), \
            torch._inductor.config.patch(fx_graph_cache=False):
        yield
    torch._dynamo.reset()


def scalar_kernels():
    """Scalar C++ kernels without bound asserts on gathered indices, for symbolic sizes. The
    graph, its guards, decompositions and lowerings are the defaults'; only the kernels' C++
    differs. Vectorising kernels with symbolic sizes simplifies every index expression with
    sympy: measured on 2 cores, a five-block HireMLP's dynamic training-step compile took 580 s
    with the defaults and 331 s with these. (The static tests compile with the defaults,
    vectorised, as users do.)"""
    return torch._inductor.config.patch({'cpp.vec_isa_ok': False,
                                         'assert_indirect_indexing': False})


# Sizes whose stage maps differ in parity, padding and batch. Not used: sizes that recompile by
# design of dynamo, a 1 anywhere (a batch of 1, a stage with one region) and a batch equal to
# the channel count (dynamo gives equal sizes one symbol, and the channel check then pins both)
DYNAMIC_SIZES = [(2, 3, 80, 96), (4, 3, 75, 93), (2, 3, 99, 130)]
# Per Hire module: (batch, height, width) against region sizes 3 and 2 (pads of 0-2)
MODULE_SIZES = [(2, 13, 17), (3, 12, 22), (2, 7, 9)]


@pytest.mark.slow
def test_dynamic_eval_is_one_graph():
    """dynamic=True: one graph for sizes whose stage maps differ in parity, padding and batch
    (a recompile is an error here), recorded as inductor receives it, run by AOTAutograd."""
    torch.manual_seed(0)
    model = make_model().eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend='aot_eager')
    with torch.no_grad():
        for size in DYNAMIC_SIZES:
            x = torch.randn(*size)
            for a, b in zip(model(x), compiled(x)):
                assert a.shape == b.shape
                assert_rel_close(a, b, 1e-5)


def _block_regions(model, x):
    """The nested compile regions dynamo records for ``model(x)``: the region each
    ``invoke_subgraph`` call runs, in order (no inductor: the recorded graph only)."""
    calls = []

    def backend(gm, example_inputs):
        calls.extend(n.args[1] for n in gm.graph.nodes
                     if n.target is torch.ops.higher_order.invoke_subgraph)
        return gm.forward

    torch.compile(model, backend=backend, fullgraph=True)(x)
    return calls


def test_compile_stamps_out_repeated_eval_blocks():
    torch.manual_seed(0)
    model = make_model(REPEATED_ARCH, drop_path_rate=0.1).eval()
    x = torch.randn(1, 3, 61, 93)
    with torch.no_grad():
        regions = _block_regions(model, x)
    # blocks 1 and 3, 2 and 4 of stage 1 run one region each (stages 2-4: one block each)
    assert len(regions) >= 4 and regions[:4] == regions[:2] * 2, regions
    assert regions[0] != regions[1]
    torch._dynamo.reset()
    # training updates BatchNorm statistics, which a region may not: each block is traced
    model.train()
    assert _block_regions(model, x) == []
    torch._dynamo.reset()
    model.eval()
    exported = torch.export.export(model, (x,))
    assert 'invoke_subgraph' not in str(exported.graph)


def test_recorded_training_step_equals_eager():
    """The backbone's training step as dynamo and AOTAutograd record it (forward, the backward
    AOTAutograd derives, BatchNorm's statistics), run by ``aot_eager``, in float64: every
    parameter's gradient against its own size (a tolerance on the largest gradient alone
    misses a wrong block: compiling training blocks once as nested regions, tried and not
    shipped, gave gradients off by 50x their size within 1e-3 of the largest). Inductor's
    kernels for a training step are checked on the Hire modules
    (test_compiled_hire_modules_with_symbolic_sizes): on the whole backbone they took 331 s of
    a 2-core suite."""
    torch.manual_seed(0)
    eager = make_model(TRAIN_ARCH).train().double()
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend='aot_eager')
    assert_training_step_equal(eager, model, compiled, [(2, 3, 75, 93)])


def hire_modules():
    """A folded and an unfolded Hire module, both shifted, with random BN statistics."""
    return randomize_norms(nn.Sequential(HireModule(8, 3, 1), HireModule(8, 2, 1,
                                                                         graph_fold=False)))


@pytest.mark.slow
def test_compiled_hire_modules_with_symbolic_sizes():
    """Inductor with symbolic sizes, on channels-last maps as the backbone gives them:
    dynamic=True in eval (one graph for every size; scalar kernels, see scalar_kernels) and a
    float64 training step with the batch dimension marked dynamic, as docs/deploy.md advises
    for training (a new height or width compiles again in training on this torch, as for any
    convolutional network)."""
    torch.manual_seed(0)
    model = hire_modules().eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad(), scalar_kernels():
        for b, h, w in MODULE_SIZES:
            x = torch.randn(b, 8, h, w).contiguous(memory_format=torch.channels_last)
            assert_rel_close(model(x), compiled(x), 1e-4)
    torch._dynamo.reset()
    eager = hire_modules().train().double()
    model = copy.deepcopy(eager)
    assert_training_step_equal(eager, model, torch.compile(model, fullgraph=True),
                               [(4, 8, 11, 14), (2, 8, 11, 14)], dynamic_batch=True,
                               channels_last=True)


def assert_training_step_equal(eager, model, compiled, sizes, dynamic_batch=False,
                               channels_last=False):
    """Float64 training steps of ``eager`` and ``compiled`` (which runs ``model``, a copy of
    ``eager``) at ``sizes``: outputs, input and parameter gradients, BN statistics.
    ``channels_last``: inputs in that memory (a Hire module's, as the backbone gives them)."""
    for size in sizes:
        # no pre-activation at a ReLU kink, where eager and compiled may take different sides
        x = draw_away_from_kinks(copy.deepcopy(eager), lambda: (torch.randn(*size).double(),))[0]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        if dynamic_batch:
            torch._dynamo.mark_dynamic(xb, 0)
        outs_a, outs_b = eager(xa), compiled(xb)
        if isinstance(outs_a, torch.Tensor):
            outs_a, outs_b = (outs_a,), (outs_b,)
        for a, b in zip(outs_a, outs_b):
            assert_rel_close(a, b, 1e-9)
        weights = [torch.randn_like(o) for o in outs_a]
        sum((o * w).sum() for o, w in zip(outs_a, weights)).backward()
        sum((o * w).sum() for o, w in zip(outs_b, weights)).backward()
        assert_rel_close(xa.grad, xb.grad, 1e-7)
        largest = max(p.grad.abs().max() for p in eager.parameters())
        for (name, pa), pb in zip(eager.named_parameters(), model.parameters()):
            # each gradient against its own size, with a floor for the gradients that vanish
            # in exact arithmetic (a convolution's bias before a BatchNorm)
            scale = max(pa.grad.abs().max(), 1e-6 * largest)
            assert_rel_close(pa.grad, pb.grad, 1e-7, scale, what=name)
        for (name, ba), bb in zip(eager.named_buffers(), model.buffers()):
            assert_rel_close(ba.double(), bb.double(), 1e-9, what=name)  # BN statistics
        eager.zero_grad(), model.zero_grad()
