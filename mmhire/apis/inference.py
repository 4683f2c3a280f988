"""Predicting on image files and drawing the predictions, for detection and segmentation
configs alike (tools/image_demo.py, tools/demo.py)."""
import contextlib
import functools
import os
import os.path as osp

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(path):
    if osp.isdir(path):
        files = sorted(osp.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise FileNotFoundError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in folder {path}')
        return files
    if not osp.isfile(path):
        raise FileNotFoundError(f'image not found: {path}')
    return [path]


def read_rgb(path):
    """The image as 3-channel RGB (gray and RGBA files are converted, as the datasets do)."""
    import mmcv
    if osp.getsize(path) == 0:
        raise ValueError(f'{path} is an empty file (0 bytes), not an image; remove it or '
                         f'replace it with the real image')
    try:
        img = mmcv.imread(path, channel_order='rgb')
    except Exception:  # cv2 / Pillow decoding errors  # noqa: BLE001
        img = None
    if img is None or img.size == 0:
        raise ValueError(f'{path} is not a readable image (truncated or corrupted, or not an '
                         f'image format OpenCV reads)')
    return img


def predict_and_draw(images, config, checkpoint, out_dir, device='cpu', score_thr=0.3,
                     cfg_options=None, fuse=False, amp=False):
    """Run the model on every image and write ``<out_dir>/<name>.png``; returns the paths."""
    from mmengine.config import Config

    from mmhire.apis import toolbox_of
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    toolbox = toolbox_of(cfg)
    os.makedirs(out_dir, exist_ok=True)
    if toolbox == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.registry import VISUALIZERS
        model = init_detector(cfg, checkpoint, device=device)
        infer = inference_detector
    else:
        from mmseg.apis import inference_model, init_model
        from mmseg.registry import VISUALIZERS
        model = init_model(cfg, checkpoint, device=device)
        infer = inference_model
    if fuse:  # fold the backbone's BatchNorms: same predictions, faster
        from mmhire.models import fuse_hire_mlps
        fuse_hire_mlps(model)
    precision = contextlib.nullcontext
    if amp:  # backbone and neck in fp16 (CUDA) / bf16 (CPUs with native bf16)
        from mmhire.engine import inference_autocast
        precision = functools.partial(inference_autocast, model)
    visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, name='mmhire_image_demo',
                                        vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    written = []
    for path in images:
        img = read_rgb(path)
        with precision():
            result = infer(model, img[..., ::-1].copy())  # the models read BGR, like the datasets
        out_file = osp.join(out_dir, osp.splitext(osp.basename(path))[0] + '.png')
        kwargs = dict(pred_score_thr=score_thr) if toolbox == 'mmdet' else {}
        visualizer.add_datasample(osp.basename(path), img, data_sample=result, draw_gt=False,
                                  show=False, out_file=out_file, **kwargs)
        written.append(out_file)
    return written
