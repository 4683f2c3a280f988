"""Export a module that takes one image batch ``(B, C, H, W)`` (a ``HireMLP`` backbone, fused or
not) to ONNX with dynamic batch, height and width, and check the file in onnxruntime.

Two exporters, both through :func:`torch.onnx.export`:

- ``'torchscript'`` (``dynamo=False``): the tracer-based exporter that mmdeploy and most
  deployment pipelines use;
- ``'dynamo'`` (``dynamo=True``, torch's default since 2.9): ``torch.export`` and onnxscript.

The Hire modules record their fast path with symbolic sizes (see
:mod:`mmhire.models.layers.branch_folding`), so one file serves every input size.
"""
import os.path as osp
import warnings
from collections import Counter

import numpy as np
import torch

from mmhire.errors import DeployError

EXPORTERS = ('torchscript', 'dynamo')
INSTALL_HINT = ("install the deploy extra: pip install -e '.[deploy]' "
                '(or pip install -r requirements/deploy.txt)')


def _require(name):
    try:
        return __import__(name)
    except ImportError as e:
        raise DeployError(f'{name} is not installed ({e}); {INSTALL_HINT}') from None


def _output_names(model, example):
    with torch.no_grad():
        outs = model(example)
    count = len(outs) if isinstance(outs, (tuple, list)) else 1
    return [f'out{i}' for i in range(count)]


# Opsets: 17 for the TorchScript exporter; 18 for the dynamo exporter, which writes 18 and
# would have to convert down (onnx 1.17's converter has no Pad adapter to 17).
DEFAULT_OPSETS = dict(torchscript=17, dynamo=18)


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: str,
                exporter: str = 'torchscript', opset: int = None) -> str:
    """Export ``model`` (put in eval mode) to ``path``, recorded at ``example``'s size with
    dynamic batch, height and width. The input is named ``input``, the outputs ``out0``,
    ``out1``, ... ``opset`` defaults to :data:`DEFAULT_OPSETS`. Refuses to overwrite an
    existing file. Returns ``path``."""
    if exporter not in EXPORTERS:
        raise DeployError(f'unknown exporter {exporter!r}; choose one of {EXPORTERS}')
    if osp.exists(path):
        raise DeployError(f'{path} exists; give another output path or remove it first '
                          '(mmhire never overwrites a file)')
    if example.dim() != 4:
        raise DeployError(f'the example input must be (B, C, H, W), got {tuple(example.shape)}')
    _require('onnx')
    opset = opset or DEFAULT_OPSETS[exporter]
    model.eval()
    names = _output_names(model, example)
    if exporter == 'torchscript':
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({n: {0: 'batch', 2: f'{n}_height', 3: f'{n}_width'} for n in names})
        with warnings.catch_warnings():
            # the exporter's notes on its own deprecation; TracerWarnings stay visible
            warnings.filterwarnings('ignore', category=DeprecationWarning)
            torch.onnx.export(model, (example,), path, dynamo=False, input_names=['input'],
                              output_names=names, dynamic_axes=axes, opset_version=opset)
    else:
        _require('onnxscript')
        _check_dynamo_example(model, example)
        if example.shape[0] < 2:
            # torch.export fixes a dimension recorded at size 1 (it cannot tell 1 from broadcast)
            example = example.expand(2, *example.shape[1:]).contiguous()
        dynamic = torch.export.Dim.DYNAMIC
        torch.onnx.export(model, (example,), path, dynamo=True, input_names=['input'],
                          output_names=names, opset_version=opset, verbose=False,
                          dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},))
    return path


def _check_dynamo_example(model, example):
    """torch.export treats a size that is 1 at the example as the constant 1 (it cannot tell
    1 from broadcasting), and the ONNX file then fails, or worse, at sizes where it is not.
    For a HireMLP, refuse examples whose stage maps or region counts reach 1."""
    from mmhire.models import HireMLP
    if not isinstance(model, HireMLP):
        return
    sizes = HireMLP.stage_sizes(*(int(side) for side in example.shape[2:]))
    for stage, (size, p) in enumerate(zip(sizes, model.arch_settings['region_sizes'])):
        for length in size:
            if length < 2 or -(-length // p) < 2:
                raise DeployError(
                    f'the dynamo exporter needs an example input whose stage maps keep at least '
                    f'2 regions per side (torch.export would fix the size-1 ones); '
                    f'{tuple(example.shape)} gives {length} positions at stage {stage + 1} '
                    f'(region size {p}): record at 2x3x224x320 or larger')


def onnx_op_types(path: str) -> Counter:
    """How often each ONNX op type (``domain::type`` outside the standard domain) occurs in the
    graph, including inside local functions and subgraphs."""
    onnx = _require('onnx')
    model = onnx.load(path)
    counts = Counter()

    def visit(nodes):
        for node in nodes:
            counts[node.op_type if node.domain in ('', 'ai.onnx')
                   else f'{node.domain}::{node.op_type}'] += 1
            for attr in node.attribute:
                if attr.g is not None:
                    visit(attr.g.node)
                for graph in attr.graphs:
                    visit(graph.node)

    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
    return counts


def median_latency_ms(run, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``run()`` in milliseconds, after ``warmup`` untimed calls."""
    import statistics
    import time
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def onnxruntime_latency_ms(path: str, x: torch.Tensor, repeats: int = 3) -> float:
    """Median latency of the file in an onnxruntime CPU session (as many intra-op threads as
    torch uses, so the figure sits next to PyTorch's) on ``x``."""
    ort = _require('onnxruntime')
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return median_latency_ms(lambda: session.run(None, feed), repeats)


def onnxruntime_session(path: str):
    """An onnxruntime CPU session of the file. Building one optimises the whole graph (seconds
    for a backbone): make one per file and run it on every input."""
    ort = _require('onnxruntime')
    return ort.InferenceSession(path, providers=['CPUExecutionProvider'])


def run_onnxruntime(path_or_session, x: torch.Tensor):
    """Run the file (a path, or a session of :func:`onnxruntime_session`) in onnxruntime (CPU)
    on ``x``; returns the outputs as numpy arrays."""
    session = (onnxruntime_session(path_or_session) if isinstance(path_or_session, str)
               else path_or_session)
    return session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})


def compare_onnxruntime(model: torch.nn.Module, path: str, inputs):
    """Run ``model`` (eval) and the ONNX file on each input; for each, the largest absolute
    difference over all outputs and the largest relative one (each output's difference over
    its own largest magnitude). Returns ``[(shape, max_abs, max_rel), ...]``."""
    model.eval()
    session = onnxruntime_session(path)
    rows = []
    for x in inputs:
        with torch.no_grad():
            expected = model(x)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        got = run_onnxruntime(session, x)
        if len(got) != len(expected):
            raise DeployError(f'{path} returned {len(got)} outputs, the model {len(expected)}')
        max_abs = max_rel = 0.
        for e, g in zip(expected, got):
            e = e.detach().cpu().numpy()
            if e.shape != g.shape:
                raise DeployError(f'{path} returned shape {g.shape} where the model returns '
                                  f'{e.shape} for an input of shape {tuple(x.shape)}')
            diff = float(np.abs(e - g).max()) if e.size else 0.
            max_abs = max(max_abs, diff)
            max_rel = max(max_rel, diff / max(float(np.abs(e).max()) if e.size else 0., 1e-30))
        rows.append((tuple(x.shape), max_abs, max_rel))
    return rows
