"""Pretrained loading of the released checkpoint layouts, through init_cfg, and its failures."""
from collections import OrderedDict

import pytest
import torch
from conftest import TINY_ARCH, save_code_running_checkpoint
from reference_hire_mlp import RefHireMLP, randomize_

from mmhire import HireMLP
from mmhire.checkpoint import CheckpointError, load_checkpoint_file


@pytest.fixture(scope='module')
def released_state():
    """A stand-in for hire_mlp_*.pth: the reference classifier's full state dict (norm/head too)."""
    return randomize_(RefHireMLP(TINY_ARCH['depths'], TINY_ARCH['embed_dims'])).state_dict()


def prefixed(state, prefix):
    return OrderedDict((prefix + k, v) for k, v in state.items())


LAYOUTS = {
    'released': lambda s: {'model': s, 'epoch': 299},
    'released_with_ema': lambda s: {'model': s, 'model_ema': {k: v + 1 for k, v in s.items()}},
    'mmengine': lambda s: {'state_dict': prefixed(s, 'backbone.'), 'meta': {'epoch': 12}},
    'plain': lambda s: s,
    'ddp_plain': lambda s: prefixed(s, 'module.'),
    'ddp_detector': lambda s: {'state_dict': prefixed(prefixed(s, 'backbone.'), 'module.')},
}


def build_loaded(path, **extra):
    model = HireMLP(arch=TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=str(path), **extra))
    model.init_weights()
    return model


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_every_layout_loads(tmp_path, released_state, layout):
    path = tmp_path / f'{layout}.pth'
    ckpt = LAYOUTS[layout](released_state)
    if layout == 'mmengine':
        ckpt['state_dict']['neck.conv.weight'] = torch.zeros(1)  # other detector parts are ignored
    torch.save(ckpt, path)
    model = build_loaded(path)
    state = model.state_dict()
    for k, v in released_state.items():
        if k.startswith(('norm.', 'head.')):
            continue  # classification only
        assert torch.equal(state[k], v), k


def test_model_ema_option(tmp_path, released_state):
    path = tmp_path / 'ema.pth'
    torch.save(LAYOUTS['released_with_ema'](released_state), path)
    model = build_loaded(path, checkpoint_key='model_ema')
    key = 'patch_embed.proj.weight'
    assert torch.equal(model.state_dict()[key], released_state[key] + 1)
    with pytest.raises(CheckpointError, match=r"no key 'ema'.*\['model', 'model_ema'\]"):
        build_loaded(path, checkpoint_key='ema')


def test_loaded_model_equals_released_outputs(tmp_path, released_state):
    path = tmp_path / 'released.pth'
    torch.save({'model': released_state}, path)
    model = HireMLP(arch=TINY_ARCH, out_norm=False,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    ref = RefHireMLP(TINY_ARCH['depths'], TINY_ARCH['embed_dims'])
    ref.load_state_dict(released_state)
    model.eval(), ref.eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        for o, e in zip(model(x), ref.forward_stages(x)):
            torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5)


def test_missing_out_norm_keys_are_logged(tmp_path, released_state, caplog):
    import logging
    path = tmp_path / 'released.pth'
    torch.save({'model': released_state}, path)
    from mmhire.checkpoint import load_pretrained
    with caplog.at_level(logging.INFO, logger='mmhire-test'):
        report = load_pretrained(HireMLP(arch=TINY_ARCH), str(path),
                                 logger=logging.getLogger('mmhire-test'))
    missing = sorted({k.split('.')[0] for k in report['missing']})
    assert missing == ['norm0', 'norm1', 'norm2', 'norm3']
    assert report['unexpected'] == []
    assert '20 model keys are not in the checkpoint' in caplog.text
    assert 'norm0.running_mean' in caplog.text


def test_other_arch_raises_with_mismatches(tmp_path):
    other = RefHireMLP([1, 2, 2, 1], [8, 16, 24, 40]).state_dict()
    path = tmp_path / 'other.pth'
    torch.save({'model': other}, path)
    with pytest.raises(CheckpointError, match=r'(?s)shapes differ.*network\.6\.0\.norm1\.weight: '
                                              r'checkpoint \(40,\) vs model \(32,\)'):
        build_loaded(path)


def test_nothing_matching_raises(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match='no key of checkpoint .* matches the model'):
        build_loaded(path)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'checkpoint not found.*download_weights\.py'):
        build_loaded(tmp_path / 'hire_mlp_small.pth')


def test_truncated_file_names_the_file(tmp_path, released_state):
    path = tmp_path / 'trunc.pth'
    torch.save({'model': released_state}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'trunc\.pth.*truncated or corrupted'):
        load_checkpoint_file(str(path))


@pytest.mark.parametrize('content, message', [
    (b'not a checkpoint', r"'.*x\.pth' is corrupted or not a PyTorch file"),
    (b'\n<!DOCTYPE html><html>Sign in</html>', 'is an HTML page, not a checkpoint')])
def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path, content, message):
    """Not called unsafe: weights_only refuses its first byte, but it holds no code."""
    path = tmp_path / 'x.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint_file(str(path))


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker, path = tmp_path / 'pwned', tmp_path / 'evil.pth'
    save_code_running_checkpoint(path, marker, {'model': {'x': torch.zeros(1)}})
    with pytest.raises(CheckpointError, match='refusing to load'):
        build_loaded(path)
    assert not marker.exists()
