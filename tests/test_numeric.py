"""mmhire.analysis.numeric: BatchNorm randomisation, inputs drawn away from ReLU kinks and the
relative error the checks report."""
import math

import pytest
import torch

from mmhire.analysis.numeric import draw_away_from_kinks, randomize_norms, rel_error, relu_margin


def test_rel_error_is_relative_to_the_reference_and_nan_when_anything_is_not_finite():
    assert rel_error(torch.tensor([1., 2.]), torch.tensor([1., 4.])) == 0.5
    ref = torch.ones(4)
    for bad in (float('nan'), float('inf'), -float('inf')):
        out = torch.tensor([1., 1., bad, 1.])
        assert math.isnan(rel_error(out, ref))
        assert math.isnan(rel_error(ref, out))  # a broken reference fails too
    assert math.isnan(rel_error(torch.ones(3), ref))  # shapes differ


def _model():
    return torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU()).double()


def test_relu_margin_is_the_smallest_pre_activation_relative_to_the_largest():
    x = torch.tensor([[-4.0, 0.5, 2.0]], dtype=torch.double)
    assert relu_margin(_model(), x) == pytest.approx(0.5 / 4)
    assert relu_margin(torch.nn.Linear(3, 3), x.float()) == float('inf')  # no ReLU


def test_relu_margin_leaves_batchnorm_statistics_alone():
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.ReLU()).train()
    before = model[0].running_mean.clone()
    relu_margin(model, torch.randn(4, 3) + 5)
    assert torch.equal(model[0].running_mean, before) and model[0].num_batches_tracked == 0


def test_draw_away_from_kinks_redraws_until_the_margin_holds():
    draws = iter([torch.tensor([[1e-9, 1.0]]), torch.tensor([[0.3, -1.0]])])
    x, = draw_away_from_kinks(_model(), lambda: (next(draws).double(),), margin=1e-6)
    assert torch.equal(x, torch.tensor([[0.3, -1.0]]).double())  # the second draw
    with pytest.raises(RuntimeError, match='no input in 3 draws'):
        draw_away_from_kinks(_model(), lambda: (torch.zeros(1, 2).double(),), tries=3)


def test_randomize_norms_moves_every_batchnorm_off_the_identity():
    model = randomize_norms(torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.BatchNorm1d(2)))
    for bn in model:
        assert (bn.running_var >= 0.3).all() and (bn.running_var <= 2).all()
        assert not torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert bn.running_mean.abs().max() > 0
