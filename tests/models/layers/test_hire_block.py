"""A Hire block as an export records it, on ``(B, H, W, C)``, equals the block."""
import copy

import pytest
import torch
from conftest import record_as_exported
from numeric import assert_rel_close, randomize_norms

from mmhire.models.layers import HireBlock, hire_block


@pytest.mark.parametrize('norm_cfg,fused', [(dict(type='BN'), False), (dict(type='BN'), True),
                                            (dict(type='GN', num_groups=2), False)],
                         ids=['bn', 'bn-fused', 'gn'])
@pytest.mark.parametrize('pad_mode', ['circular', 'constant'])
def test_block_as_exported_equals_block(pad_mode, norm_cfg, fused, monkeypatch):
    """The norms as per-channel affine maps (a BatchNorm) or on the NCHW view (any other
    norm), the channel MLP as products over the last axis; the fused block keeps ``norm1``
    in front of zero padding."""
    block = randomize_norms(HireBlock(8, 2., 3, 1, pad_mode=pad_mode,
                                      norm_cfg=norm_cfg)).eval()
    if fused:
        block.fuse()
        block.eval()  # (the convolutions fusing makes are new modules)
    x = torch.randn(2, 8, 7, 10)
    with torch.no_grad():
        expected = block(x)
        record_as_exported(monkeypatch)
        assert hire_block.exports_channels_last(block)
        got = block(x)
        assert not hire_block.exports_channels_last(copy.deepcopy(block).train())
    assert_rel_close(expected, got, 1e-5)
