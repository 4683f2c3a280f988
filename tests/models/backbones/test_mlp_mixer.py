"""MLP-Mixer, written from the paper as a comparison peer with mmpretrain's parameter names."""
import pytest
import torch
from mmcv.cnn.bricks import DropPath

from mmhire.models.backbones import MlpMixer

TINY = dict(embed_dims=16, num_layers=2, tokens_mlp_dims=8, channels_mlp_dims=32)


def mmpretrain_keys(embed_dims, num_layers, tokens_mlp_dims, channels_mlp_dims, tokens, patch):
    """name -> shape of mmpretrain 1.2.0's MlpMixer state dict, read off its source
    (mmpretrain/models/backbones/mlp_mixer.py): mmcv's PatchEmbed (``projection`` conv, no
    norm), per layer ``ln1``/``ln2`` (build_norm_layer with postfix 1/2) and two mmcv FFNs
    (num_fcs=2: ``layers`` = [Sequential(Linear, act, Dropout), Linear, Dropout]), then the
    final ``ln1``."""
    c = embed_dims
    keys = {'patch_embed.projection.weight': (c, 3, patch, patch),
            'patch_embed.projection.bias': (c,), 'ln1.weight': (c,), 'ln1.bias': (c,)}
    for i in range(num_layers):
        p = f'layers.{i}.'
        for name, dims, hidden in (('token_mix', tokens, tokens_mlp_dims),
                                   ('channel_mix', c, channels_mlp_dims)):
            keys.update({p + name + '.layers.0.0.weight': (hidden, dims),
                         p + name + '.layers.0.0.bias': (hidden,),
                         p + name + '.layers.1.weight': (dims, hidden),
                         p + name + '.layers.1.bias': (dims,)})
        keys.update({p + 'ln1.weight': (c,), p + 'ln1.bias': (c,),
                     p + 'ln2.weight': (c,), p + 'ln2.bias': (c,)})
    return keys


def test_b16_state_dict_has_mmpretrain_names_shapes_and_count():
    with torch.device('meta'):
        model = MlpMixer('b')
    expected = mmpretrain_keys(768, 12, 384, 3072, tokens=196, patch=16)
    assert len(expected) == 4 + 12 * 12
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    # patch conv + 12 x (2 LN, token MLP 196-384-196, channel MLP 768-3072-768) + final LN;
    # the ~59.9M usually quoted for Mixer-B/16 includes the 768 x 1000 head (769,000)
    layer = 2 * 2 * 768 + (2 * 196 * 384 + 384 + 196) + (2 * 768 * 3072 + 3072 + 768)
    count = 3 * 16 * 16 * 768 + 768 + 12 * layer + 2 * 768
    assert sum(p.numel() for p in model.parameters()) == count == 59_111_472
    assert count + 769_000 == 59_880_472


def test_large_arch_and_aliases():
    with torch.device('meta'):
        model = MlpMixer('L', img_size=(64, 96))
    assert (model.embed_dims, model.num_layers, model.num_patches) == (1024, 24, 24)
    assert model.layers[0].token_mix.layers[0][0].weight.shape == (512, 24)
    assert MlpMixer.arch_zoo['base'] == MlpMixer.arch_zoo['b']


def test_built_for_64x96_runs_at_64x96():
    model = MlpMixer(TINY, img_size=(64, 96), out_indices=[0, -1]).eval()
    assert model.patch_resolution == (4, 6) and model.num_patches == 24
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 24), (2, 16, 24)]


def test_other_input_size_is_refused_with_the_sizes():
    model = MlpMixer(TINY, img_size=64)
    with pytest.raises(ValueError) as info:
        model(torch.randn(1, 3, 64, 96))
    first, *rest = str(info.value).splitlines()
    assert "doesn't support dynamic input shape" in first
    assert '64x96' in first and 'img_size=(64, 64)' in first
    assert 'token-mixing MLPs are sized to the token count' in rest[0]
    assert 'rebuild with img_size=(64, 96)' in rest[0]


def test_final_norm_follows_only_the_last_layer():
    model = MlpMixer(TINY, img_size=32, out_indices=[0, 1]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = model(x)
        tokens, _ = model.patch_embed(x)
        first = model.layers[0](tokens)
        last = model.ln1(model.layers[1](first))
    assert torch.allclose(outs[0], first.transpose(1, 2))
    assert torch.allclose(outs[1], last.transpose(1, 2))


def test_out_indices_and_layer_cfgs():
    model = MlpMixer(TINY, img_size=32, out_indices=[-1, 0, -2],
                     layer_cfgs=[dict(), dict(channels_mlp_dims=4)])
    assert model.out_indices == (0, 1)
    assert model.layers[1].channel_mix.layers[1].weight.shape == (16, 4)
    assert len(MlpMixer(TINY, img_size=32)(torch.randn(1, 3, 32, 32))) == 1


def test_forward_backward_reaches_every_parameter():
    model = MlpMixer(TINY, img_size=(32, 48), drop_rate=0.1, drop_path_rate=0.1)
    model.init_weights()
    model(torch.randn(2, 3, 32, 48))[0].square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_drop_path_only_in_training():
    model = MlpMixer(TINY, img_size=32, drop_path_rate=0.5)
    assert all(isinstance(layer.drop_path, DropPath) and layer.drop_path.drop_prob == 0.5
               for layer in model.layers)
    plain = MlpMixer(TINY, img_size=32).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], plain(x)[0])
        model.train()
        assert not torch.equal(model(x)[0], plain(x)[0])


def test_builds_from_mmdet_scope():
    import mmhire  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(type='MlpMixer', arch=TINY, img_size=(32, 48),
                                  out_indices=(-1,)))
    assert isinstance(model, MlpMixer) and model.out_indices == (1,)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='s'), r"unknown arch 's'; choose one of \['b', 'base', 'l', 'large'\]"),
    (dict(arch=dict(embed_dims=8, num_layers=1)),
     r"needs exactly the keys \['embed_dims', 'num_layers', 'tokens_mlp_dims', "
     r"'channels_mlp_dims'\], got \['embed_dims', 'num_layers'\]"),
    (dict(arch=TINY, out_indices=2), r'0\.\.1 \(or -2\.\.-1\), got \[2\]'),
    (dict(arch=TINY, out_indices=[-3]), r'got \[-3\]'),
    (dict(arch=TINY, layer_cfgs=[dict()] * 3), 'layer_cfgs must be a dict or 2 dicts'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MlpMixer(**kwargs)
