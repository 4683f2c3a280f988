"""Whole models through mmdeploy (onnxruntime backend) on torch 2.13: RetinaNet, Mask R-CNN,
Semantic FPN and UperNet from our configs (tiny backbone, demo-size images), exported once and
run in onnxruntime next to PyTorch; and the compatibility shims that make mmdeploy 1.3.1 work."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from config_helpers import shrink
from mmengine.config import Config

from mmhire import compat
from mmhire.deploy.adaptive_pool import adaptive_avg_pool2d_exact
from mmhire.deploy.mmdeploy_export import deploy_config_for, deploy_model
from mmhire.errors import DeployError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def small_config(name, demo_data, tmp_path, scale):
    cfg = shrink(Config.fromfile(osp.join(ROOT, 'configs', name)), demo_data,
                 str(tmp_path / 'work'))
    for t in cfg.test_pipeline:  # mmdeploy reads the top-level test pipeline
        if t['type'] == 'Resize':
            t['scale'] = scale
    return cfg


def save_random_checkpoint(cfg, path, spread_scores=False):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, DefaultScope
    import mmdet.models  # noqa: F401  (registers the detectors)
    import mmseg.models  # noqa: F401
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    if spread_scores:  # RetinaNet's prior bias scores every anchor ~0.01: spread the scores
        with torch.no_grad():  # so that ranking and NMS see distinct values
            model.bbox_head.retina_cls.bias.normal_(0, 1)
    torch.save(dict(state_dict=model.state_dict()), str(path))
    return str(path)


@pytest.mark.slow
def test_retinanet_deploys(demo_data, tmp_path):
    cfg = small_config('retinanet_hire_t_fpn_1x_coco.py', demo_data, tmp_path, (128, 96))
    ckpt = save_random_checkpoint(cfg, tmp_path / 'retinanet.pth', spread_scores=True)
    result = deploy_model(cfg, ckpt, str(tmp_path / 'onnx'), shape=(96, 128),
                          check_shapes=[(75, 101)])
    assert 'NonMaxSuppression' in result['ops']
    assert all('::' not in op for op in result['ops'])  # no custom ops
    for row in result['rows']:
        assert row['pytorch_dets'] == row['onnx_dets'] > 0
        # 100 boxes of a random detector: near-ties may swap one or two at the NMS margin
        assert row['unmatched'] <= 2, row
        assert row['max_score_diff'] < 1e-4, row


@pytest.mark.slow
def test_mask_rcnn_deploys(demo_data, tmp_path):
    cfg = small_config('maskrcnn_hire_t_fpn_1x_coco.py', demo_data, tmp_path, (128, 96))
    ckpt = save_random_checkpoint(cfg, tmp_path / 'maskrcnn.pth')
    result = deploy_model(cfg, ckpt, str(tmp_path / 'onnx'), shape=(96, 128))
    assert {'RoiAlign', 'NonMaxSuppression'} <= set(result['ops'])
    row = result['rows'][0]
    assert row['pytorch_dets'] == row['onnx_dets'] > 0
    # the random RPN's proposals are near-duplicates; most final boxes must still agree
    assert row['unmatched'] <= row['pytorch_dets'] // 10, row


@pytest.mark.slow
@pytest.mark.parametrize('name,scale', [('fpn_hire_t_512x512_40k_ade20k.py', (128, 96)),
                                        ('upernet_hire_s_512x512_160k_ade20k.py', (256, 256))])
def test_segmentors_deploy(demo_data, tmp_path, name, scale):
    cfg = small_config(name, demo_data, tmp_path, scale)
    ckpt = save_random_checkpoint(cfg, tmp_path / 'seg.pth')
    # UperNet at 256x256: an 8x8 last map, which pyramid pooling at 3 and 6 does not divide
    result = deploy_model(cfg, ckpt, str(tmp_path / 'onnx'), shape=(scale[1], scale[0]),
                          check_shapes=[(75, 101)])
    for row in result['rows']:
        # equal labels, except where PyTorch's own two best logits tie (a random model)
        assert row['network_equal'] == 1.0 or row['max_margin_where_different'] < 1e-5, row
        assert row['network_equal'] > 0.999, row
    assert all('::' not in op for op in result['ops'])


def test_deploy_configs_follow_the_model():
    det = Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_hire_t_fpn_1x_coco.py'))
    assert deploy_config_for(det).onnx_config.output_names == ['dets', 'labels']
    mask = Config.fromfile(osp.join(ROOT, 'configs', 'maskrcnn_hire_t_fpn_1x_coco.py'))
    post = deploy_config_for(mask).codebase_config.post_processing
    assert deploy_config_for(mask).onnx_config.output_names == ['dets', 'labels', 'masks']
    assert post.score_threshold == mask.model.test_cfg.rcnn.score_thr
    assert post.keep_top_k == mask.model.test_cfg.rcnn.max_per_img
    seg = Config.fromfile(osp.join(ROOT, 'configs', 'fpn_hire_t_512x512_40k_ade20k.py'))
    assert deploy_config_for(seg).codebase_config.with_argmax


def test_deploy_refuses_a_non_empty_out_dir(tmp_path):
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'keep.onnx').write_bytes(b'user file')
    ckpt = tmp_path / 'c.pth'
    torch.save({}, str(ckpt))
    with pytest.raises(DeployError, match='not empty'):
        deploy_model(osp.join(ROOT, 'configs', 'retinanet_hire_t_fpn_1x_coco.py'), str(ckpt),
                     str(tmp_path / 'out'))
    assert (tmp_path / 'out' / 'keep.onnx').read_bytes() == b'user file'


def test_shim_onnx_export_defaults_to_torchscript(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(torch.onnx, 'export', lambda *a, **k: seen.update(k))
    compat.mmdeploy_export_uses_torchscript()
    compat.mmdeploy_export_uses_torchscript()  # idempotent: wraps once
    torch.onnx.export(torch.nn.Identity(), (torch.ones(1),), str(tmp_path / 'a.onnx'))
    assert seen['dynamo'] is False
    torch.onnx.export(torch.nn.Identity(), (torch.ones(1),), 'b.onnx', dynamo=True)
    assert seen['dynamo'] is True  # an explicit choice wins


def test_shim_cast_long(tmp_path):
    compat.restore_onnx_cast_long()
    from torch.onnx.symbolic_opset9 import _cast_Long  # what mmcv's RoIAlign symbolic imports

    class Graph:
        def op(self, name, *inputs, **attrs):
            return name, inputs, attrs

    name, inputs, attrs = _cast_Long(Graph(), 'x', False)
    assert name == 'Cast' and inputs == ('x',)
    assert attrs['to_i'] == torch.onnx.TensorProtoDataType.INT64


@pytest.mark.parametrize('size', [(16, 16), (8, 8), (7, 5), (1, 1), (2, 9), (33, 20)])
def test_exact_adaptive_pool(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    for bins in (1, 2, 3, 6, (2, 3)):
        torch.testing.assert_close(adaptive_avg_pool2d_exact(x, bins),
                                   F.adaptive_avg_pool2d(x, bins), rtol=1e-12, atol=1e-12)


def test_exact_adaptive_pool_exports_for_every_size(tmp_path):
    from mmhire.deploy import compare_onnxruntime, export_onnx

    class Pyramid(torch.nn.Module):
        def forward(self, x):
            return tuple(adaptive_avg_pool2d_exact(x, s) for s in (1, 2, 3, 6))

    path = str(tmp_path / 'pool.onnx')
    export_onnx(Pyramid(), torch.randn(2, 4, 16, 16), path)
    rows = compare_onnxruntime(Pyramid(), path, [torch.randn(1, 4, *s) for s in
                                                 [(16, 16), (8, 8), (7, 5), (1, 1), (20, 33)]])
    for shape, _, rel in rows:
        assert rel < 1e-5, shape
