import copy

import pytest
import torch
from conftest import TINY_ARCH, stage_sides
from reference_hire_mlp import ARCHS, RefHireMLP, randomize_
from torch.nn.modules.batchnorm import _BatchNorm

from mmhire import HireMLP


def ref_for(arch):
    return RefHireMLP(arch['depths'], arch['embed_dims'])


# ----------------------------------------------------------------------------- arch / shapes
@pytest.mark.parametrize('name,alias',
                         [('tiny', 'T'), ('small', 's'), ('base', 'B'), ('large', 'l')])
def test_named_archs_match_reference_keys(name, alias):
    model = HireMLP(arch=alias, out_norm=False)
    depths, dims = ARCHS[name]
    assert model.depths == depths and model.embed_dims == dims
    ref = RefHireMLP(depths, dims)
    ref_state = {k: v.shape for k, v in ref.state_dict().items()
                 if not k.startswith(('norm.', 'head.'))}
    ours = {k: v.shape for k, v in model.state_dict().items()}
    assert ours == ref_state  # same names, same shapes: the released files load as they are


def test_outputs_shapes_and_strides():
    model = HireMLP(arch=TINY_ARCH).eval()
    outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 16, 24), (1, 16, 8, 12), (1, 24, 4, 6),
                                              (1, 32, 2, 3)]
    assert len(HireMLP(arch=TINY_ARCH, out_indices=(1, 3)).eval()(torch.randn(1, 3, 32, 32))) == 2


def test_arch_dict_defaults_and_shift_schedule():
    model = HireMLP(arch=dict(depths=[1, 1, 4, 3], embed_dims=[8, 8, 8, 8]))
    shifts = [[blk.attn.shift for blk in model.network[2 * i]] for i in range(4)]
    # (j % period) * step with periods [2, 2, 3, 2] and steps [2, 2, 1, 1]
    assert shifts == [[0], [0], [0, 1, 2, 0], [0, 1, 0]]
    assert [model.network[2 * i][0].attn.region_size for i in range(4)] == [4, 3, 3, 2]


def test_drop_path_schedule():
    model = HireMLP(arch=dict(depths=[1, 1, 1, 2], embed_dims=[8, 8, 8, 8]), drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.) for i in range(4) for b in model.network[2 * i]]
    assert rates == pytest.approx([0., 0.075, 0.15, 0.225, 0.3])  # k / (N - 1) over 5 blocks


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize('size', [(64, 64), (57, 83), (13, 9), (5, 30)])
@pytest.mark.parametrize('arch', [
    TINY_ARCH,
    dict(depths=[2, 2, 3, 2], embed_dims=[8, 12, 16, 20], region_sizes=[2, 4, 3, 1],
         shift_steps=[1, 3, 2, 1], shift_periods=[2, 2, 3, 2], mlp_ratios=[2, 3, 4, 1]),
])
def test_equals_reference_model(arch, size):
    """out_norm=False in eval mode reproduces the released network.0/2/4/6 outputs."""
    model = HireMLP(arch=arch, out_norm=False)
    full = dict(model.arch_settings)
    ref = RefHireMLP(full['depths'], full['embed_dims'], full['region_sizes'],
                     full['shift_periods'], full['shift_steps'], full['mlp_ratios'])
    randomize_(ref)
    model.load_state_dict(
        {k: v for k, v in ref.state_dict().items() if not k.startswith(('norm.', 'head.'))},
        strict=True)
    model.eval(), ref.eval()
    x = torch.randn(2, 3, *size)
    try:
        expected = ref.forward_stages(x)
    except RuntimeError:
        pytest.skip('the released code cannot run this size (pad larger than the map)')
    with torch.no_grad():
        outs = model(x)
    for o, e in zip(outs, expected):
        torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5)


def test_equals_reference_in_training_mode_with_grads():
    # float64, so that agreement is judged far below float32 round-off
    model = HireMLP(arch=TINY_ARCH, out_norm=False).double()
    ref = randomize_(ref_for(TINY_ARCH)).double()
    model.load_state_dict({k: v for k, v in ref.state_dict().items()
                           if not k.startswith(('norm.', 'head.'))})
    x1 = torch.randn(2, 3, 45, 38, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    outs, refs = model(x1), ref.forward_stages(x2)
    for o, e in zip(outs, refs):
        torch.testing.assert_close(o, e, rtol=1e-10, atol=1e-10)
    weights = [torch.linspace(0, 1, o.numel(), dtype=o.dtype).view_as(o) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    sum((o * w).sum() for o, w in zip(refs, weights)).backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-10)
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-9, atol=1e-10)
    ref_buffers = dict(ref.named_buffers())  # BN running statistics moved the same way
    for name, b in model.named_buffers():
        torch.testing.assert_close(b, ref_buffers[name], rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- any input size
def test_every_small_size_forward_backward():
    model = HireMLP(arch=dict(depths=[1, 1, 1, 1], embed_dims=[4, 4, 4, 4])).train()
    for h in range(1, 65):
        for w in (1, 2, 3, h, 64 - h + 1):
            x = torch.randn(2, 3, h, w, requires_grad=True)
            outs = model(x)
            expected = list(zip(stage_sides(h), stage_sides(w)))
            assert [tuple(o.shape[2:]) for o in outs] == expected, (h, w)
            sum(o.sum() for o in outs).backward()
            assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize('mode', ['circular', 'constant', 'replicate'])
@pytest.mark.parametrize('size', [(1333, 800), (801, 1217), (32, 2000)])
def test_large_odd_sizes(size, mode):
    model = HireMLP(arch=dict(depths=[1, 1, 1, 1], embed_dims=[4, 4, 8, 8]), pad_mode=mode).train()
    x = torch.randn(2, 3, *size)
    outs = model(x)
    assert [tuple(o.shape[2:]) for o in outs] == list(zip(stage_sides(size[0]),
                                                          stage_sides(size[1])))
    sum(o.mean() for o in outs).backward()
    assert stage_sides(1333) == [333, 167, 84, 42]


# ----------------------------------------------------------------------------- training behaviour
def test_gradients_reach_every_parameter():
    model = HireMLP(arch=TINY_ARCH, drop_path_rate=0.1).train()
    outs = model(torch.randn(2, 3, 33, 47))
    sum(o.pow(2).mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert no_grad == []


@pytest.mark.parametrize('out_norm', [True, False])
@pytest.mark.parametrize('fast', [True, False])
def test_stage_gradients_flow_back_channels_last(fast, out_norm):
    """The outputs are NCHW, and the gradients that come back through them go on into the
    fast path's channels-last network in its layout, from the output norm on (plain: NCHW
    throughout)."""
    model = HireMLP(arch=TINY_ARCH, fast=fast, out_norm=out_norm).train()
    seen = []
    last = model.norm3 if out_norm else model.network[-1]
    last.register_full_backward_hook(lambda m, gin, gout: seen.append(gout[0]))
    outs = model(torch.randn(2, 3, 64, 96))
    assert all(o.is_contiguous() for o in outs)
    sum(o.pow(2).mean() for o in outs).backward()
    assert seen[0].is_contiguous(memory_format=torch.channels_last) == fast
    assert seen[0].is_contiguous() != fast


@pytest.mark.parametrize('frozen', [0, 1, 2, 4])
def test_frozen_stages(frozen):
    model = HireMLP(arch=TINY_ARCH, frozen_stages=frozen)
    model.train()
    frozen_prefixes = ['patch_embed.'] + [f'network.{j}.' for j in range(2 * frozen - 1)] + \
        [f'norm{i}.' for i in range(frozen)]
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(tuple(frozen_prefixes))), name
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and name.startswith(tuple(frozen_prefixes)):
            assert not m.training, name
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(2, 3, 32, 32))
    after = model.state_dict()
    for k in before:  # frozen BN statistics do not move in training mode
        if k.startswith(tuple(frozen_prefixes)):
            assert torch.equal(before[k], after[k]), k


def test_norm_eval():
    model = HireMLP(arch=TINY_ARCH, norm_eval=True)
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.network[0].training  # the rest still trains
    model.eval()
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))


def test_with_cp_same_outputs_and_grads():
    torch.manual_seed(1)
    a = HireMLP(arch=TINY_ARCH, drop_path_rate=0.2)
    b = copy.deepcopy(a)
    b.with_cp = True
    a.train(), b.train()
    x = torch.randn(2, 3, 37, 29)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(5)
    oa = a(xa)
    torch.manual_seed(5)
    ob = b(xb)
    for u, v in zip(oa, ob):
        torch.testing.assert_close(u, v)
    sum(o.sum() for o in oa).backward()
    sum(o.sum() for o in ob).backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_norm_cfgs_build_and_run():
    from mmengine.model import revert_sync_batchnorm
    sync = HireMLP(arch=TINY_ARCH, norm_cfg=dict(type='SyncBN'))
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in sync.modules())
    sync = revert_sync_batchnorm(sync)
    sync(torch.randn(2, 3, 32, 32))
    gn = HireMLP(arch=TINY_ARCH, norm_cfg=dict(type='GN', num_groups=2)).train()
    assert not any(isinstance(m, _BatchNorm) for m in gn.modules())
    outs = gn(torch.randn(1, 3, 32, 32))  # GN trains on a batch of one
    assert len(outs) == 4


def test_out_norm_adds_one_norm_per_output():
    model = HireMLP(arch=TINY_ARCH, out_indices=(1, 3))
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')
    keys = HireMLP(arch=TINY_ARCH, out_norm=False).state_dict()
    assert not any(k.startswith('norm') for k in keys)


def test_default_init_follows_release():
    model = HireMLP(arch=TINY_ARCH)
    model.init_weights()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            # timm-style trunc_normal(std=0.02): bounds at +-2 absolute, as the release uses it
            assert 0.015 < m.weight.std().item() < 0.025 and m.weight.abs().max().item() <= 2
            assert m.bias is None or not m.bias.any()
        if isinstance(m, _BatchNorm):
            assert torch.all(m.weight == 1) and not m.bias.any()


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"unknown arch 'huge'.*'base', 'large', 'small', 'tiny'"),
    (dict(arch=dict(depths=[1, 2, 3])), r"arch\['depths'\] must be a list of 4"),
    (dict(arch=dict(embed_dims=[8, 16, 25, 32])), r'even'),
    (dict(arch=dict(depth=[1, 1, 1, 1])), r"unknown arch keys \['depth'\]"),
    (dict(arch=dict(region_sizes=[0, 1, 1, 1])), r'positive int'),
    (dict(arch=TINY_ARCH, out_indices=(0, 4)), r'out_indices must be stage indices in 0..3'),
    (dict(arch=TINY_ARCH, out_indices=()), r'out_indices is empty'),
    (dict(arch=TINY_ARCH, pad_mode='reflect'), r"pad_mode must be one of \('circular', "),
    (dict(arch=TINY_ARCH, frozen_stages=5), r'frozen_stages'),
    (dict(arch=TINY_ARCH, in_channels=0), r'in_channels must be a positive int'),
    (dict(arch=TINY_ARCH, drop_path_rate=1.5), r'drop_path_rate'),
    (dict(arch=TINY_ARCH, drop_path_rate='0.1'),
     r"drop_path_rate must be a number in \[0, 1\), got '0.1'"),
    (dict(arch=TINY_ARCH, frozen_stages=True), r'frozen_stages must be an int in \[-1, 4\] '
                                               r'\(-1 freezes nothing, 0 the stem\), got True'),
])
def test_construction_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HireMLP(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.randn(3, 32, 32), r'4-D input \(N, C, H, W\), got shape \(3, 32, 32\)'),
    (torch.randn(1, 1, 32, 32), r'expects 3 input channels .* got 1'),
    (torch.randn(1, 3, 0, 32), r'empty input'),
])
def test_forward_errors(x, match):
    with pytest.raises(ValueError, match=match):
        HireMLP(arch=TINY_ARCH)(x)


def test_pretrained_argument_is_deprecated_but_works(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save({'model': HireMLP(arch=TINY_ARCH, out_norm=False).state_dict()}, path)
    with pytest.warns(DeprecationWarning, match='init_cfg'):
        model = HireMLP(arch=TINY_ARCH, pretrained=str(path))
    assert model.init_cfg == dict(type='Pretrained', checkpoint=str(path))


@pytest.mark.parametrize('kwargs,match', [
    (dict(arhc='tiny'), r"unknown argument\(s\) 'arhc' \(did you mean 'arch'\?\)"),
    (dict(drop_path=0.1), r"'drop_path' \(did you mean 'drop_path_rate'\?\)"),
    (dict(norm_evel=True, zzz=1), r"'norm_evel' \(did you mean 'norm_eval'\?\), 'zzz'"),
])
def test_misspelled_arguments_suggest_the_right_name(kwargs, match):
    from mmhire.errors import MMHireError
    with pytest.raises(MMHireError, match=match):
        HireMLP(**kwargs)
    # the same message through an OpenMMLab registry, as a config builds it
    from mmdet.registry import MODELS
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='HireMLP', **kwargs))


def test_errors_are_the_packages_own():
    from mmhire.errors import HireMLPInputError, HireMLPTypeError
    with pytest.raises(HireMLPInputError):
        HireMLP(arch=TINY_ARCH)(torch.randn(1, 3, 0, 8))
    with pytest.raises(HireMLPTypeError):
        HireMLP(arch=TINY_ARCH)([1, 2])


def test_docstring_examples_hold():
    import doctest

    from mmhire.models.backbones import hire_mlp
    result = doctest.testmod(hire_mlp)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize('height,width', [(230, 333), (1, 2), (800, 1216), (61, 45)])
def test_stage_sizes_follow_the_documented_rule(height, width):
    assert HireMLP.stage_sizes(height, width) == list(zip(stage_sides(height),
                                                          stage_sides(width)))
