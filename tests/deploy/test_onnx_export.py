"""ONNX export of Hire blocks and of the backbone, with both exporters, fused and unfused:
recorded once at one size, onnxruntime gives PyTorch's numbers at other sizes (odd sizes, tiny
maps, pads larger than the map, batch 1 and 2), and the graph holds only standard ONNX ops."""
import copy
import itertools
import warnings

import onnx
import pytest
import torch
from conftest import TINY_ARCH
from numeric import randomize_norms

from mmhire import HireMLP
from mmhire.deploy import compare_onnxruntime, export_onnx, onnx_op_types
from mmhire.errors import DeployError
from mmhire.models.layers import PAD_MODES, HireBlock


# (region size, shift): the whole grid for the TorchScript exporter on unfused blocks (seconds);
# for the dynamo exporter (about 10 s a block on 2 cores) and for fused blocks (the same graph
# with other weights: fusing happens in PyTorch) a cover of it: every region size, no shift, a
# shift below, equal to and above the region size
FULL_GRID = list(itertools.product([1, 2, 3, 4], [0, 1, 2, 3]))
COVER_GRID = [(1, 3), (2, 0), (3, 3), (4, 2)]
GRIDS = dict(torchscript=FULL_GRID, dynamo=COVER_GRID)


class ParallelBlocks(torch.nn.Module):
    """One Hire block per (region size, shift) of ``grid``, and one with ``graph_fold=False``
    per (region size, shift) of ``unfolded_grid``, all on the same input: one export checks
    the grid of a pad mode."""

    def __init__(self, pad_mode, channels=8, grid=FULL_GRID, unfolded_grid=()):
        super().__init__()
        self.blocks = torch.nn.ModuleList(
            HireBlock(channels, 2., region_size, shift, pad_mode=pad_mode, graph_fold=fold)
            for cases, fold in ((grid, True), (unfolded_grid, False))
            for region_size, shift in cases)

    def forward(self, x):
        return tuple(block(x) for block in self.blocks)

    def fuse(self):
        for block in self.blocks:
            block.fuse()
        return self


def export_checked(model, example, path, exporter):
    """Export, failing on any TracerWarning (a size the tracer would freeze into the graph)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        export_onnx(model, example, str(path), exporter)
    frozen = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert not frozen, frozen


def assert_standard_ops(path, allow_pad=False):
    ops = onnx_op_types(str(path))
    assert all('::' not in op for op in ops), f'custom ops in the graph: {sorted(ops)}'
    assert 'Pad' not in ops or allow_pad, sorted(ops)
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == 'Pad':  # only zero padding (the stem's), never a wrap-around Pad
            modes = [a.s.decode() for a in node.attribute if a.name == 'mode']
            assert modes in ([], ['constant']), modes
    return ops


def assert_matches(model, path, sizes, rel=1e-4):
    rows = compare_onnxruntime(model, str(path), [torch.randn(*s) for s in sizes])
    for shape, max_abs, max_rel in rows:
        assert max_rel < rel, f'input {shape}: max abs {max_abs:.3g}, max rel {max_rel:.3g}'


BLOCK_SIZES = [(2, 8, 9, 11), (1, 8, 1, 1), (1, 8, 2, 5), (2, 8, 13, 7), (1, 8, 3, 17)]


# The TorchScript exporter (mmdeploy's) records every pad mode, fused and not. The dynamo
# exporter (about a minute per case on 2 cores) records the pad modes the backbone test does
# not ('circular' is recorded there, fused and not), unfused: fusing happens in PyTorch before
# either exporter sees the model
BLOCK_CASES = ([(p, f, 'torchscript') for p in PAD_MODES for f in (False, True)]
               + [(p, False, 'dynamo') for p in PAD_MODES if p != 'circular'])


@pytest.mark.parametrize('pad_mode,fused,exporter', BLOCK_CASES,
                         ids=[f"{p}-{'fused' if f else 'unfused'}-{e}" for p, f, e in BLOCK_CASES])
def test_hire_blocks_export(tmp_path, pad_mode, fused, exporter):
    grid = COVER_GRID if fused else GRIDS[exporter]
    # the unfolded end of graph_fold too where an export takes seconds (the backbone test
    # records it in its last stage)
    unfolded = COVER_GRID if exporter == 'torchscript' else ()
    model = randomize_norms(ParallelBlocks(pad_mode, grid=grid, unfolded_grid=unfolded)).eval()
    if fused:
        model.fuse()
    path = tmp_path / 'blocks.onnx'
    export_checked(model, torch.randn(2, 8, 9, 11), path, exporter)
    assert_standard_ops(path)
    assert_matches(model, path, BLOCK_SIZES)


BACKBONE_SIZES = [(2, 3, 64, 96), (1, 3, 37, 53), (2, 3, 16, 16), (1, 3, 5, 7), (1, 3, 2, 2),
                  (1, 3, 100, 33)]


# The dynamo exporter takes about 100 s per backbone on 2 busy cores: it records the default
# pad mode, fused, only. Every pad mode's Hire blocks, with their BatchNorms, are recorded by it
# in test_hire_blocks_export, and fusing happens in PyTorch before either exporter sees a model
BACKBONE_CASES = ([(p, 'torchscript', f) for p in ('circular', 'constant') for f in (False, True)]
                  + [('circular', 'dynamo', True)])


@pytest.mark.parametrize('pad_mode,exporter,fused', BACKBONE_CASES,
                         ids=[f"{p}-{e}-{'fused' if f else 'unfused'}"
                              for p, e, f in BACKBONE_CASES])
def test_backbone_export(tmp_path, pad_mode, fused, exporter):
    model = randomize_norms(HireMLP(arch=TINY_ARCH, pad_mode=pad_mode)).eval()
    if fused:
        model.fuse()
    path = tmp_path / 'backbone.onnx'
    # recorded where every stage keeps >= 2 regions per side (what dynamo needs, see
    # test_dynamo_refuses_an_example_with_size_one_regions); run down to 1x1 stage maps
    export_checked(model, torch.randn(2, 3, 96, 128), path, exporter)
    ops = assert_standard_ops(path, allow_pad=True)
    assert 'Conv' in ops and 'Gather' in ops
    # The stem pads inputs under 3x3 pixels up to its kernel's reach; the dynamo exporter
    # records that pad as the guard it is (see hire_block.pad_to_min_size), so its files
    # take inputs from 3x3 up
    sizes = [s for s in BACKBONE_SIZES if exporter == 'torchscript' or min(s[2:]) >= 3]
    assert_matches(model, path, sizes)


def test_dynamo_refuses_an_example_with_size_one_regions(tmp_path):
    with pytest.raises(DeployError, match='at least 2 regions'):
        export_onnx(HireMLP(arch=TINY_ARCH), torch.randn(2, 3, 64, 96),
                    str(tmp_path / 'x.onnx'), exporter='dynamo')
    assert not (tmp_path / 'x.onnx').exists()


def test_jit_trace_serves_other_sizes():
    model = randomize_norms(HireMLP(arch=TINY_ARCH)).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        traced = torch.jit.trace(model, torch.randn(2, 3, 64, 96), check_trace=False)
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    for size in [(1, 3, 37, 53), (2, 3, 5, 7), (1, 3, 2, 2)]:
        x = torch.randn(*size)
        with torch.no_grad():
            for a, b in zip(model(x), traced(x)):
                assert a.shape == b.shape
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_export_refuses_to_overwrite(tmp_path):
    path = tmp_path / 'kept.onnx'
    path.write_bytes(b'user file')
    with pytest.raises(DeployError, match='exists'):
        export_onnx(HireMLP(arch=TINY_ARCH), torch.randn(1, 3, 32, 32), str(path))
    assert path.read_bytes() == b'user file'
    with pytest.raises(DeployError, match='unknown exporter'):
        export_onnx(HireMLP(arch=TINY_ARCH), torch.randn(1, 3, 32, 32),
                    str(tmp_path / 'x.onnx'), exporter='tensorrt')


def test_fused_copy_exports_like_the_original(tmp_path):
    """fuse() on a copy leaves the original trainable; both export to the same numbers."""
    model = randomize_norms(HireMLP(arch=TINY_ARCH)).eval()
    fused = copy.deepcopy(model).fuse()
    export_onnx(fused, torch.randn(2, 3, 48, 40), str(tmp_path / 'fused.onnx'))
    x = torch.randn(1, 3, 41, 29)
    rows = compare_onnxruntime(model, str(tmp_path / 'fused.onnx'), [x])
    assert rows[0][2] < 1e-4
    model.train()  # the original is untouched


def test_deploy_tool_backbone_table(tmp_path, capsys):
    """``tools/deploy.py backbone``: one row per exporter and input, with the differences and
    the latency of the file in onnxruntime next to PyTorch's."""
    import importlib.util
    import os.path as osp

    from config_helpers import ROOT
    spec = importlib.util.spec_from_file_location('deploy_tool',
                                                  osp.join(ROOT, 'tools', 'deploy.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(['backbone', '--arch', 'tiny', '--exporter', 'torchscript', '--fuse',
               '--export-shape', '1x3x64x96', '--check-shape', '1x3x64x96', '2x3x45x61',
               '--out-dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert '| max rel diff | onnxruntime (ms) | PyTorch (ms) |' in out
    rows = [line.split('|')[1:-1] for line in out.splitlines() if line.startswith('| torchscript')]
    assert [row[3].strip() for row in rows] == ['1x3x64x96', '2x3x45x61']
    for row in rows:
        assert float(row[5]) < 1e-4 and float(row[6]) > 0 and float(row[7]) > 0
