"""Whole detectors and segmentors to ONNX through mmdeploy (onnxruntime backend), checked
against the PyTorch model on the spot.

mmdeploy 1.3.1 ships its deploy configs only in its repository; the three this needs are
written out below (its ``*_onnxruntime_dynamic.py`` files with the ``_base_`` chain merged),
with ``optimize=False`` (the TorchScript optimiser extension is not in the wheel) and mmhire
among the modules its task processor imports. Two shims make mmdeploy run on torch >= 2.9
(:func:`mmhire.deploy.mmdeploy_shims.mmdeploy_export_uses_torchscript`,
:func:`mmhire.deploy.mmdeploy_shims.restore_onnx_cast_long`).
"""
import copy
import os
import os.path as osp

import numpy as np

from mmhire.errors import DeployError

from .detection_match import format_unexplained, match_detections
from .onnx_export import INSTALL_HINT, median_latency_ms, onnx_op_types

_ONNX = dict(type='onnx', export_params=True, keep_initializers_as_inputs=False,
             opset_version=11, save_file='end2end.onnx', input_names=['input'],
             input_shape=None, optimize=False)
_POST_PROCESSING = dict(score_threshold=0.05, confidence_threshold=0.005, iou_threshold=0.5,
                        max_output_boxes_per_class=200, pre_top_k=5000, keep_top_k=100,
                        background_label_id=-1)
_DETS = {'dets': {0: 'batch', 1: 'num_dets'}, 'labels': {0: 'batch', 1: 'num_dets'}}
_IMAGE = {'input': {0: 'batch', 2: 'height', 3: 'width'}}

DEPLOY_CONFIGS = dict(
    detection=dict(
        onnx_config=dict(_ONNX, output_names=['dets', 'labels'], dynamic_axes={**_IMAGE, **_DETS}),
        codebase_config=dict(type='mmdet', task='ObjectDetection', model_type='end2end',
                             module=['mmhire'], post_processing=_POST_PROCESSING),
        backend_config=dict(type='onnxruntime')),
    instance_seg=dict(
        onnx_config=dict(_ONNX, output_names=['dets', 'labels', 'masks'], dynamic_axes={
            **_IMAGE, **_DETS,
            'masks': {0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'}}),
        codebase_config=dict(type='mmdet', task='ObjectDetection', model_type='end2end',
                             module=['mmhire'], post_processing=dict(
                                 _POST_PROCESSING, export_postprocess_mask=False)),
        backend_config=dict(type='onnxruntime')),
    segmentation=dict(
        onnx_config=dict(_ONNX, output_names=['output'], dynamic_axes={
            **_IMAGE, 'output': {0: 'batch', 2: 'height', 3: 'width'}}),
        codebase_config=dict(type='mmseg', task='Segmentation', with_argmax=True,
                             module=['mmhire']),
        backend_config=dict(type='onnxruntime')),
)


def deploy_config_for(model_cfg):
    """The deploy config (an mmengine ``Config``) for an mmdet / mmseg model config."""
    from mmengine.config import Config

    from mmhire.apis import toolbox_of
    if toolbox_of(model_cfg) == 'mmseg':
        return Config(copy.deepcopy(DEPLOY_CONFIGS['segmentation']))
    roi_head = model_cfg.model.get('roi_head') or {}
    cfg = Config(copy.deepcopy(DEPLOY_CONFIGS['instance_seg' if roi_head.get('mask_head')
                                              else 'detection']))
    # the model's own test-time thresholds, so that ONNX and PyTorch keep the same boxes
    test_cfg = model_cfg.model.get('test_cfg') or {}
    test_cfg = test_cfg.get('rcnn', test_cfg)
    post = cfg.codebase_config.post_processing
    if 'score_thr' in test_cfg:
        post.score_threshold = test_cfg['score_thr']
    if 'iou_threshold' in (test_cfg.get('nms') or {}):
        post.iou_threshold = test_cfg['nms']['iou_threshold']
    if 'max_per_img' in test_cfg:
        post.keep_top_k = test_cfg['max_per_img']
    return cfg


def _prepare_mmdeploy():
    try:
        import mmdeploy  # noqa: F401
    except ImportError as e:
        raise DeployError(f'mmdeploy is not installed ({e}); {INSTALL_HINT}') from None
    from . import mmdeploy_shims
    mmdeploy_shims.mmdeploy_export_uses_torchscript()
    mmdeploy_shims.restore_onnx_cast_long()
    mmdeploy_shims.mmdeploy_exact_adaptive_pool()
    from .rpn_nms import register_rpn_per_level_nms
    register_rpn_per_level_nms()


def _synthetic_image(shape, seed):
    """A demo scene (shapes on a textured background), uint8 (H, W, 3)."""
    from mmhire.datasets.demo_data import draw_scene
    return np.ascontiguousarray(draw_scene(np.random.default_rng(seed), *shape)[0])


def _check_out_dir(out_dir):
    if osp.exists(out_dir) and os.listdir(out_dir):
        raise DeployError(f'{out_dir} is not empty; give a new or empty --out-dir '
                          '(mmhire never overwrites files)')
    os.makedirs(out_dir, exist_ok=True)


def _compare_detections(torch_result, onnx_result, post_processing):
    """PyTorch's detections against onnxruntime's, every difference explained by a near-tie
    or reported (:func:`.detection_match.match_detections`, with the thresholds both sides
    used)."""
    lists = [(r.pred_instances.bboxes.numpy(), r.pred_instances.scores.numpy(),
              r.pred_instances.labels.numpy()) for r in (torch_result, onnx_result)]
    return match_detections(*lists, nms_iou=post_processing.iou_threshold,
                            keep_top_k=post_processing.keep_top_k,
                            score_thr=post_processing.score_threshold)


def _compare_segmentation(pytorch_model, onnx_file, batch, ours, theirs):
    """Label maps at the network's input size (the exported graph's own output against the
    argmax of PyTorch's logits), with the logit margin where they differ, and at the image's
    size after each side's post-processing (mmdeploy resizes labels, mmseg resizes logits)."""
    import torch

    from .onnx_export import run_onnxruntime
    inputs = batch['inputs']
    metas = [sample.metainfo for sample in batch['data_samples']]
    with torch.no_grad():
        logits = pytorch_model.encode_decode(inputs, metas)
    labels = run_onnxruntime(onnx_file, inputs)[0][:, 0]
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).numpy()
    differ = labels != logits.argmax(dim=1).numpy()
    a, b = ours.pred_sem_seg.data.cpu().numpy(), theirs.pred_sem_seg.data.cpu().numpy()
    return dict(network_equal=float(1 - differ.mean()),
                max_margin_where_different=float(margin[differ].max()) if differ.any() else 0.,
                image_equal=float((a == b).mean()) if a.shape == b.shape else 0.)


def deploy_model(config, checkpoint, out_dir, image=None, shape=(320, 512), check_shapes=(),
                 verbose=True):
    """Export ``config`` + ``checkpoint`` with mmdeploy to ``out_dir/end2end.onnx``, run it in
    onnxruntime and in PyTorch on the export image and on synthetic images of
    ``check_shapes`` and compare. Returns a dict: ``onnx`` (path), ``ops`` (op counts),
    ``rows`` (one dict per image)."""
    import torch
    from mmengine.config import Config

    _prepare_mmdeploy()
    from mmdeploy.apis import build_task_processor, torch2onnx

    if not osp.isfile(checkpoint):
        raise DeployError(f'checkpoint not found: {checkpoint}')
    _check_out_dir(out_dir)
    model_cfg = copy.deepcopy(config) if isinstance(config, Config) else Config.fromfile(config)
    backbone = model_cfg.model.get('backbone', {})
    if backbone.get('init_cfg') is not None:  # the trained weights replace the ImageNet init
        backbone['init_cfg'] = None
    deploy_cfg = deploy_config_for(model_cfg)
    export_image = image if image is not None else _synthetic_image(shape, seed=0)

    torch2onnx(export_image, out_dir, 'end2end.onnx', deploy_cfg, model_cfg, checkpoint,
               device='cpu')
    onnx_file = osp.join(out_dir, 'end2end.onnx')

    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    pytorch_model = processor.build_pytorch_model(checkpoint)
    onnx_model = processor.build_backend_model([onnx_file], processor.update_data_preprocessor)
    images = [('export image', export_image)] + [
        (f'synthetic {h}x{w}', _synthetic_image((h, w), seed=i + 1))
        for i, (h, w) in enumerate(check_shapes)]
    segmentation = deploy_cfg.codebase_config.type == 'mmseg'
    rows = []
    for name, img in images:
        data, _ = processor.create_input(img, None)
        with torch.no_grad():  # the network's input: what both models' test_step feed it
            batch = pytorch_model.data_preprocessor(copy.deepcopy(data), False)
        inputs = batch['inputs']
        with torch.no_grad():
            ours = pytorch_model.test_step(copy.deepcopy(data))[0]
            theirs = onnx_model.test_step(copy.deepcopy(data))[0]
        if segmentation:
            rows.append(dict(image=name, input=tuple(inputs.shape[-2:]),
                             **_compare_segmentation(pytorch_model, onnx_file, batch, ours,
                                                     theirs)))
        else:
            match = _compare_detections(ours, theirs, deploy_cfg.codebase_config.post_processing)
            rows.append(dict(image=name, input=tuple(inputs.shape[-2:]),
                             image_in_input=tuple(batch['data_samples'][0].img_shape),
                             ori_shape=tuple(batch['data_samples'][0].ori_shape),
                             pytorch_dets=match['ours'], onnx_dets=match['theirs'],
                             matched=match['matched'],
                             near_ties=sum(match['explained'].values()),
                             unexplained=len(match['unexplained']),
                             unexplained_detail=format_unexplained(match),
                             differences=match['unexplained'],
                             max_score_diff=match['max_score_diff'],
                             max_box_diff=match['max_box_diff']))
    # latency of one image through each whole model (pre-processing, network, post-processing)
    data, _ = processor.create_input(export_image, None)
    with torch.no_grad():
        latency_ms = dict(
            onnxruntime=median_latency_ms(lambda: onnx_model.test_step(copy.deepcopy(data))),
            pytorch=median_latency_ms(lambda: pytorch_model.test_step(copy.deepcopy(data))))
    ops = onnx_op_types(onnx_file)
    if verbose:
        name = config if isinstance(config, str) else getattr(config, 'filename', 'the model')
        _print_report(name, onnx_file, rows, ops, segmentation, latency_ms)
    return dict(onnx=onnx_file, ops=ops, rows=rows, latency_ms=latency_ms)


# PyTorch's two best logits closer than this are a tie that float rounding may break either way
LOGIT_TIE = 1e-5


def real_differences(result):
    """What :func:`deploy_model`'s comparison found beyond near-ties, one line per image (empty
    when the exported model gives PyTorch's results): detections that no tie explains, label
    pixels where PyTorch's two best logits are further apart than ``LOGIT_TIE``."""
    lines = []
    for r in result['rows']:
        if r.get('unexplained'):
            padded = tuple(r.get('image_in_input', r['input'])) != tuple(r['input'])
            why = (f" (the resized image fills {r['image_in_input'][0]}x"
                   f"{r['image_in_input'][1]} of the {r['input'][0]}x{r['input'][1]} network "
                   "input: the exported graph clips boxes at the padded input, PyTorch at the "
                   "image)" if padded else '')
            lines.append(f"{r['image']}: {r['unexplained']} detection(s) differ{why}\n"
                         f"{r['unexplained_detail']}")
        if r.get('network_equal', 1.) < 1 and r['max_margin_where_different'] >= LOGIT_TIE:
            lines.append(f"{r['image']}: {1 - r['network_equal']:.4%} of the labels differ, "
                         f"where PyTorch's logit margin is up to "
                         f"{r['max_margin_where_different']:.3g} (not a tie)")
    return lines


def _print_report(config, onnx_file, rows, ops, segmentation, latency_ms):
    print(f'\n{config} -> {onnx_file} (mmdeploy, onnxruntime backend, dynamic batch/height/'
          'width)\n')
    if segmentation:
        print('| image | network input | labels equal to PyTorch, network output | largest '
              'PyTorch logit margin where not | equal after post-processing |')
        print('|---|---|---|---|---|')
        for r in rows:
            print(f"| {r['image']} | {r['input'][0]}x{r['input'][1]} | {r['network_equal']:.4%} "
                  f"| {r['max_margin_where_different']:.2e} | {r['image_equal']:.4%} |")
    else:
        print('| image | network input | PyTorch dets | ONNX dets | matched | unmatched at a '
              'near-tie | unmatched, real differences | max score diff | max box diff (px) |')
        print('|---|---|---|---|---|---|---|---|---|')
        for r in rows:
            print(f"| {r['image']} | {r['input'][0]}x{r['input'][1]} | {r['pytorch_dets']} | "
                  f"{r['onnx_dets']} | {r['matched']} | {r['near_ties']} | {r['unexplained']} | "
                  f"{r['max_score_diff']:.2e} | {r['max_box_diff']:.2e} |")
        for r in rows:
            if r['unexplained']:
                print(f"\n{r['image']}: real differences\n{r['unexplained_detail']}")
    print(f"\nlatency, export image, whole model (median of 3 after a warm-up): onnxruntime "
          f"{latency_ms['onnxruntime']:.0f} ms, PyTorch {latency_ms['pytorch']:.0f} ms "
          f"({latency_ms['pytorch'] / latency_ms['onnxruntime']:.2f}x)")
    print(f'\ngraph ops ({sum(ops.values())} nodes): '
          + ', '.join(f'{op} {n}' for op, n in sorted(ops.items())))
