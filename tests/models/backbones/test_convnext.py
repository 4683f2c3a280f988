"""ConvNeXt, written from the paper as a comparison peer with mmpretrain's parameter names."""
import pytest
import torch
from mmcv.cnn.bricks import DropPath

from mmhire.models.backbones import ConvNeXt

TINY = dict(depths=[1, 1, 1, 1], channels=[8, 16, 24, 32])
DEPTHS_T, CHANNELS_T = [3, 3, 9, 3], [96, 192, 384, 768]


def mmpretrain_keys(depths, channels, out_indices, in_channels=3, patch=4):
    """name -> shape of mmpretrain 1.2.0's ConvNeXt state dict, read off its source
    (mmpretrain/models/backbones/convnext.py, default linear_pw_conv=True, use_grn=False):
    ``downsample_layers`` is a ModuleList whose entry 0 is the stem Sequential(Conv2d, LN2d) and
    entries i >= 1 are Sequential(LN2d, Conv2d 2x2); ``stages`` holds Sequentials of
    ConvNeXtBlock (gamma, depthwise_conv, norm, pointwise_conv1/2 as nn.Linear); ``norm{i}``
    (LN2d) per out index."""
    c = channels
    keys = {'downsample_layers.0.0.weight': (c[0], in_channels, patch, patch),
            'downsample_layers.0.0.bias': (c[0],),
            'downsample_layers.0.1.weight': (c[0],), 'downsample_layers.0.1.bias': (c[0],)}
    for i in range(1, len(depths)):
        keys.update({f'downsample_layers.{i}.0.weight': (c[i - 1],),
                     f'downsample_layers.{i}.0.bias': (c[i - 1],),
                     f'downsample_layers.{i}.1.weight': (c[i], c[i - 1], 2, 2),
                     f'downsample_layers.{i}.1.bias': (c[i],)})
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f'stages.{i}.{j}.'
            keys.update({p + 'gamma': (c[i],),
                         p + 'depthwise_conv.weight': (c[i], 1, 7, 7),
                         p + 'depthwise_conv.bias': (c[i],),
                         p + 'norm.weight': (c[i],), p + 'norm.bias': (c[i],),
                         p + 'pointwise_conv1.weight': (4 * c[i], c[i]),
                         p + 'pointwise_conv1.bias': (4 * c[i],),
                         p + 'pointwise_conv2.weight': (c[i], 4 * c[i]),
                         p + 'pointwise_conv2.bias': (c[i],)})
    for i in out_indices:
        keys.update({f'norm{i}.weight': (c[i],), f'norm{i}.bias': (c[i],)})
    return keys


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize('out_indices,norms', [(-1, [3]), ([0, 1, 2, 3], [0, 1, 2, 3])])
def test_tiny_state_dict_has_mmpretrain_names_and_shapes(out_indices, norms):
    with torch.device('meta'):
        model = ConvNeXt('tiny', out_indices=out_indices)
    expected = mmpretrain_keys(DEPTHS_T, CHANNELS_T, norms)
    assert len(expected) == 16 + 9 * 18 + 2 * len(norms)
    assert shapes(model) == expected


def test_tiny_parameter_count_by_formula():
    """Per block 8C^2 + 58C (dw 49C + C, LN 2C, Linear C->4C 4C^2 + 4C, Linear 4C->C 4C^2 + C,
    gamma C); stem 16 * 3 * C0 + C0 + 2 C0; downsampling 2 C(i-1) + 4 C(i-1) Ci + Ci; out norm
    2C. ConvNeXt-T's published 28.59M (28,589,128) includes the classifier: its 768 x 1000 fc
    (769,000) here is absent, its norm is norm3."""
    c = CHANNELS_T
    count = 16 * 3 * c[0] + c[0] + 2 * c[0]
    count += sum(2 * c[i - 1] + 4 * c[i - 1] * c[i] + c[i] for i in range(1, 4))
    count += sum(d * (8 * ch * ch + 58 * ch) for d, ch in zip(DEPTHS_T, c))
    count += 2 * c[3]
    with torch.device('meta'):
        model = ConvNeXt('tiny')
    assert sum(p.numel() for p in model.parameters()) == count == 27_820_128
    assert count + 768 * 1000 + 1000 == 28_589_128


@pytest.mark.parametrize('arch', ['small', 'base'])
def test_small_and_base_names(arch):
    with torch.device('meta'):
        model = ConvNeXt(arch.upper(), out_indices=[0, 1, 2, 3])
    assert shapes(model) == mmpretrain_keys(**ConvNeXt.arch_zoo[arch], out_indices=range(4))


@pytest.mark.parametrize('h,w', [(61, 45), (33, 47)])
def test_map_and_vector_outputs_for_odd_sizes(h, w):
    maps = ConvNeXt(TINY, out_indices=[0, 1, 2, 3], gap_before_final_norm=False).eval()
    vecs = ConvNeXt(TINY, out_indices=[0, 1, 2, 3]).eval()
    vecs.load_state_dict(maps.state_dict())
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        outs, pooled = maps(x), vecs(x)
    sides = [(h // 4, w // 4)]  # convs without padding floor each side
    for _ in range(3):
        sides.append((sides[-1][0] // 2, sides[-1][1] // 2))
    assert [tuple(o.shape) for o in outs] == [(2, c, *s) for c, s in zip(TINY['channels'], sides)]
    assert all(o.is_contiguous() for o in outs)
    assert [tuple(o.shape) for o in pooled] == [(2, c) for c in TINY['channels']]
    # norm over channels of every pixel: zero mean (weight 1, bias 0 as built)
    assert outs[0].mean(1).abs().max() < 1e-5


def test_out_indices_negative_sorted_and_deduplicated():
    model = ConvNeXt(TINY, out_indices=[-1, 1, -3], gap_before_final_norm=False).eval()
    assert model.out_indices == (1, 3)
    assert {k.split('.')[0] for k in model.state_dict() if k.startswith('norm')} == {'norm1',
                                                                                     'norm3'}
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32]
    assert ConvNeXt(TINY).out_indices == (3,)


def test_forward_backward_reaches_every_parameter():
    model = ConvNeXt(TINY, out_indices=[0, 1, 2, 3], gap_before_final_norm=False,
                     layer_scale_init_value=1.0, drop_path_rate=0.1)
    model.init_weights()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 40, 36))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_layer_scale_off():
    for value in (0, 0., None):
        model = ConvNeXt(TINY, layer_scale_init_value=value)
        assert not any(k.endswith('gamma') for k in model.state_dict())
    gamma = ConvNeXt(TINY).stages[0][0].gamma
    assert torch.equal(gamma, torch.full((8,), 1e-6))


def test_frozen_stages():
    model = ConvNeXt(TINY, frozen_stages=2, out_indices=[0, 1, 2, 3])
    model.train()
    for i in range(4):
        frozen = i < 2
        for m in (model.downsample_layers[i], model.stages[i]):
            assert all(p.requires_grad != frozen for p in m.parameters())
            assert all(sub.training != frozen for sub in m.modules())
    assert all(p.requires_grad for p in model.norm0.parameters())  # out norms stay trainable
    assert model.train() is model


def test_drop_path_only_in_training():
    model = ConvNeXt(TINY, drop_path_rate=0.6, layer_scale_init_value=1.0,
                     gap_before_final_norm=False)
    rates = [b.drop_path.drop_prob for s in model.stages[1:] for b in s]
    assert isinstance(model.stages[0][0].drop_path, torch.nn.Identity)  # the first rate is 0
    assert rates == pytest.approx([0.2, 0.4, 0.6])
    assert all(isinstance(s[0].drop_path, DropPath) for s in model.stages[1:])
    plain = ConvNeXt(TINY, layer_scale_init_value=1.0, gap_before_final_norm=False).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], plain(x)[0])
        model.train()
        assert not torch.equal(model(x)[0], plain(x)[0])


def test_default_init_and_pretrained_with_prefix(tmp_path):
    model = ConvNeXt(TINY)
    model.init_weights()
    w = model.stages[3][0].pointwise_conv1.weight
    assert 0.019 < w.std() < 0.021  # truncated normal, std .02 (cut at +-2, as in the paper)
    assert model.stages[3][0].pointwise_conv1.bias.abs().max() == 0
    # an mmdet checkpoint of a detector whose backbone is mmpretrain's ConvNeXt
    ckpt = tmp_path / 'det.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in model.state_dict().items()}},
               ckpt)
    loaded = ConvNeXt(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt),
                                          prefix='backbone.'))
    loaded.init_weights()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_builds_from_mmdet_scope():
    import mmhire  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(type='ConvNeXt', arch=TINY, out_indices=[0, 1, 2, 3],
                                  drop_path_rate=0.1, layer_scale_init_value=1.0,
                                  gap_before_final_norm=False))
    assert isinstance(model, ConvNeXt) and model.out_indices == (0, 1, 2, 3)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), r"unknown arch 'huge'; choose one of \['tiny', 'small', 'base'\]"),
    (dict(arch=dict(depths=[1, 1, 1, 1])), r"needs exactly the keys 'depths' and 'channels', "
                                           r"got \['depths'\]"),
    (dict(arch=dict(depths=[1, 1], channels=[8])), 'same length'),
    (dict(arch=TINY, out_indices=4), r'0\.\.3 \(or -4\.\.-1\), got \[4\]'),
    (dict(arch=TINY, out_indices=[-5]), r'got \[-5\]'),
    (dict(arch=TINY, frozen_stages=5), r'frozen_stages must be an int in \[-1, 4\]'),
    (dict(arch=TINY, drop_path_rate=1.0), r'ConvNeXt: drop_path_rate must be a number in'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvNeXt(**kwargs)
