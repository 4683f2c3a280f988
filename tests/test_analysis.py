"""Params and MACs at 224x224 match the released table (mmhire.analysis.RELEASED)."""
import pytest

from mmhire.analysis import RELEASED, backbone_complexity, classifier_params


@pytest.mark.parametrize('arch', list(RELEASED))
def test_params_and_macs_match_release(arch):
    params, macs = RELEASED[arch]['params'], RELEASED[arch]['macs']
    r = backbone_complexity(arch, (224, 224))
    assert abs(r['params_with_head'] - params) / params < 0.01
    last_dims = 768 if arch == 'large' else 512
    assert abs(r['params'] - (params - classifier_params(last_dims))) / params < 0.01
    assert abs(r['macs'] - macs) / macs < 0.05
