"""Whole models through mmdeploy (onnxruntime backend) on torch 2.13: RetinaNet, Mask R-CNN,
Semantic FPN and UperNet from our configs (tiny backbone, demo-size images), exported once and
run in onnxruntime next to PyTorch; and the compatibility shims that make mmdeploy 1.3.1 work."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from config_helpers import shrink
from mmengine.config import Config

from mmhire.deploy import mmdeploy_shims
from mmhire.deploy.adaptive_pool import adaptive_avg_pool2d_exact
from mmhire.deploy.mmdeploy_export import (LOGIT_TIE, deploy_config_for, deploy_model,
                                           real_differences)
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


def assert_same_detections(result):
    """Every detection of PyTorch's has onnxruntime's twin (same label, score within 1e-4,
    IoU >= 0.9) and vice versa, except where a near-tie that rounding can flip explains the
    difference (mmhire.deploy.detection_match); the count of such ties is not limited, so the
    check does not depend on how the CPU rounds."""
    for row in result['rows']:
        assert row['pytorch_dets'] > 0 and row['onnx_dets'] > 0, row
        assert row['unexplained'] == 0, f"{row['image']}:\n{row['unexplained_detail']}"
        assert row['max_score_diff'] < 1e-4, row
        # boxes past the image's bottom / right edge: PyTorch clips them at the image,
        # mmdeploy at the padded network input (under one network pixel here)
        assert row['max_box_diff'] < 1.0, row


@pytest.mark.slow
def test_retinanet_deploys(demo_data, tmp_path):
    cfg = small_config('retinanet_hire_t_fpn_1x_coco.py', demo_data, tmp_path, (128, 96))
    ckpt = save_random_checkpoint(cfg, tmp_path / 'retinanet.pth', spread_scores=True)
    result = deploy_model(cfg, ckpt, str(tmp_path / 'onnx'), shape=(96, 128),
                          check_shapes=[(75, 101)])
    assert 'NonMaxSuppression' in result['ops']
    assert all('::' not in op for op in result['ops'])  # no custom ops
    assert_same_detections(result)
    # the whole model's latency in onnxruntime and in PyTorch, as the deploy tool prints it
    assert set(result['latency_ms']) == {'onnxruntime', 'pytorch'}
    assert all(ms > 0 for ms in result['latency_ms'].values())


@pytest.mark.slow
def test_mask_rcnn_deploys(demo_data, tmp_path):
    cfg = small_config('maskrcnn_hire_t_fpn_1x_coco.py', demo_data, tmp_path, (128, 96))
    ckpt = save_random_checkpoint(cfg, tmp_path / 'maskrcnn.pth')
    # 72x96 is resized to fill the 96x128 input exactly; 75x101 fills 95x128 of it
    result = deploy_model(cfg, ckpt, str(tmp_path / 'onnx'), shape=(96, 128),
                          check_shapes=[(72, 96), (75, 101)])
    assert {'RoiAlign', 'NonMaxSuppression'} <= set(result['ops'])
    unpadded, padded = result['rows'][:2], result['rows'][2]
    # the RPN's proposals as mmdet makes them (per-level NMS, no score threshold,
    # mmhire.deploy.rpn_nms): every final box of the random model agrees
    assert_same_detections(dict(rows=unpadded))
    # a padded input: the graph clips proposals at the padded input's bottom edge (75.8 image
    # pixels), PyTorch at the image's (75); the RoI features of those proposals, and so their
    # scores and what the top-100 cut keeps, differ. The deploy tool names the cause.
    assert padded['image_in_input'] == (95, 128) and padded['input'] == (96, 128)
    for line in real_differences(dict(rows=[padded])):
        assert 'the exported graph clips boxes at the padded input' in line


@pytest.mark.slow
@pytest.mark.parametrize('name,scale', [('fpn_hire_t_512x512_40k_ade20k.py', (128, 96)),
                                        ('upernet_hire_s_512x512_80k_ade20k.py', (256, 256))])
def test_segmentors_deploy(demo_data, tmp_path, name, scale):
    cfg = small_config(name, demo_data, tmp_path, scale)
    ckpt = save_random_checkpoint(cfg, tmp_path / 'seg.pth')
    # UperNet at 256x256: an 8x8 last map, which pyramid pooling at 3 and 6 does not divide
    result = deploy_model(cfg, ckpt, str(tmp_path / 'onnx'), shape=(scale[1], scale[0]),
                          check_shapes=[(75, 101)])
    for row in result['rows']:
        # equal labels, except where PyTorch's own two best logits tie to within rounding
        # (a random model): no share of differing pixels is allowed beyond those
        assert row['network_equal'] == 1.0 or row['max_margin_where_different'] < LOGIT_TIE, row
    assert all('::' not in op for op in result['ops'])


def test_real_differences_name_what_is_not_a_tie():
    ok = dict(rows=[dict(image='a', unexplained=0, unexplained_detail=''),
                    dict(image='b', network_equal=0.99, max_margin_where_different=3e-6)])
    assert real_differences(ok) == []
    bad = dict(rows=[dict(image='a', unexplained=2, unexplained_detail='ours #3: ...',
                          input=(96, 128), image_in_input=(96, 128)),
                     dict(image='b', network_equal=0.99, max_margin_where_different=0.2),
                     dict(image='c', unexplained=1, unexplained_detail='theirs #0: ...',
                          input=(96, 128), image_in_input=(95, 128))])
    lines = real_differences(bad)
    assert len(lines) == 3 and lines[0] == 'a: 2 detection(s) differ\nours #3: ...'
    assert '1.0000% of the labels differ' in lines[1] and '0.2 (not a tie)' in lines[1]
    assert lines[2].startswith('c: 1 detection(s) differ (the resized image fills 95x128 of '
                               'the 96x128 network input: the exported graph clips boxes')


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
    mmdeploy_shims.mmdeploy_export_uses_torchscript()
    mmdeploy_shims.mmdeploy_export_uses_torchscript()  # idempotent: wraps once
    torch.onnx.export(torch.nn.Identity(), (torch.ones(1),), str(tmp_path / 'a.onnx'))
    assert seen['dynamo'] is False
    torch.onnx.export(torch.nn.Identity(), (torch.ones(1),), 'b.onnx', dynamo=True)
    assert seen['dynamo'] is True  # an explicit choice wins


def test_shim_cast_long(tmp_path):
    mmdeploy_shims.restore_onnx_cast_long()
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
