"""Property-based tests: random valid settings never crash and follow the size rule; random
invalid ones raise the package's own ValueError."""
import pytest
import torch
from conftest import stage_sides
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmhire import HireMLP


four = lambda s: st.lists(s, min_size=4, max_size=4)  # noqa: E731
valid_arch = st.fixed_dictionaries(dict(
    depths=four(st.integers(1, 2)),
    embed_dims=four(st.sampled_from([4, 6, 8, 12])),
    mlp_ratios=four(st.sampled_from([0.5, 1, 2])),
    region_sizes=four(st.integers(1, 5)),
    shift_periods=four(st.integers(1, 4)),
    shift_steps=four(st.integers(0, 4)),
))
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(arch=valid_arch, pad_mode=st.sampled_from(['circular', 'constant', 'replicate']),
       h=st.integers(1, 70), w=st.integers(1, 70), fast=st.booleans(),
       training=st.booleans())
def test_valid_settings_never_crash_and_follow_the_size_rule(
        arch, pad_mode, h, w, fast, training):
    model = HireMLP(arch=arch, pad_mode=pad_mode, fast=fast).train(training)
    x = torch.randn(2, 3, h, w, requires_grad=training)
    outs = model(x)
    assert [tuple(o.shape) for o in outs] == [
        (2, c, sh, sw) for c, sh, sw in zip(arch['embed_dims'], stage_sides(h), stage_sides(w))]
    assert all(torch.isfinite(o).all() for o in outs)
    if training:
        sum(o.mean() for o in outs).backward()
        assert torch.isfinite(x.grad).all()


bad_value = st.one_of(st.integers(-3, 0), st.just(1.5), st.just('2'), st.none())


@FAST
@given(key=st.sampled_from(['depths', 'embed_dims', 'region_sizes', 'shift_periods']),
       stage=st.integers(0, 3), value=bad_value)
def test_invalid_arch_entries_raise_clear_errors(key, stage, value):
    arch = dict(depths=[1, 1, 1, 1], embed_dims=[8, 8, 8, 8])
    arch.setdefault(key, [2, 2, 2, 2])
    arch[key] = list(arch[key])
    arch[key][stage] = value
    with pytest.raises(ValueError, match=rf"HireMLP: .*{key}"):
        HireMLP(arch=arch)


@FAST
@given(key=st.sampled_from(['depths', 'embed_dims', 'mlp_ratios', 'region_sizes',
                            'shift_periods', 'shift_steps']),
       length=st.sampled_from([0, 1, 2, 3, 5]))
def test_wrong_list_lengths_raise(key, length):
    with pytest.raises(ValueError, match=rf"HireMLP: arch\['{key}'\] must be a list of 4"):
        HireMLP(arch={key: [2] * length})


@FAST
@given(dims=st.integers(1, 40).filter(lambda c: c % 2 == 1 or c < 4))
def test_odd_or_tiny_embed_dims_raise(dims):
    with pytest.raises(ValueError, match='even and >= 4'):
        HireMLP(arch=dict(embed_dims=[8, dims, 8, 8], depths=[1, 1, 1, 1]))


@FAST
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=6))
def test_bad_input_shapes_raise(shape):
    model = HireMLP(arch=dict(depths=[1, 1, 1, 1], embed_dims=[4, 4, 4, 4])).eval()
    x = torch.zeros(shape)
    valid = len(shape) == 4 and shape[1] == 3 and min(shape) > 0
    if valid:
        model(x)
    else:
        with pytest.raises(ValueError, match='HireMLP'):
            model(x)
