"""Params and MACs at 224x224 match the released table (reference page)."""
import pytest

from mmhire.analysis import backbone_complexity

RELEASED = {'tiny': (18.04e6, 2.1e9), 'small': (33.11e6, 4.2e9), 'base': (58.23e6, 8.1e9),
            'large': (95.72e6, 13.4e9)}


@pytest.mark.parametrize('arch', list(RELEASED))
def test_params_and_macs_match_release(arch):
    params, macs = RELEASED[arch]
    r = backbone_complexity(arch, (224, 224))
    assert abs(r['params_with_head'] - params) / params < 0.01
    assert abs(r['params'] - (params - 2 * 512 - 513 * 1000 if arch != 'large'
                              else params - 2 * 768 - 769 * 1000)) / params < 0.01
    assert abs(r['macs'] - macs) / macs < 0.05
