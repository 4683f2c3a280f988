"""Smoke check: an MMDetection Mask R-CNN with a HireMLP backbone, one train step and one predict.

Builds ``mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py`` with its ResNet-50 replaced by a
HireMLP (random init, no download) and runs a loss + backward and a prediction on random images.
"""
import argparse
import time

import torch
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

import mmhire  # noqa: F401  registers HireMLP


def build_detector(arch):
    from mmdet.registry import MODELS
    from mmhire import HireMLP
    cfg = get_config('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py')
    dims = HireMLP(arch=arch).embed_dims
    cfg.model.backbone = dict(type='HireMLP', arch=arch)
    cfg.model.neck.in_channels = dims
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def random_batch(model, n, size):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    from mmdet.structures.mask import BitmapMasks
    h, w = size
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                        scale_factor=(1., 1.), batch_input_shape=(h, w)))
        inst = InstanceData()
        inst.bboxes = torch.tensor([[10., 12., 60., 70.], [30., 5., 90., 50.]])
        inst.labels = torch.tensor([1, 5])
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        masks[0, 12:70, 10:60] = 1
        masks[1, 5:50, 30:90] = 1
        inst.masks = BitmapMasks(masks.numpy(), h, w)
        s.gt_instances = inst
        samples.append(s)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 160))
    args = parser.parse_args()
    from mmhire.env import collect_env
    for k, v in collect_env().items():
        print(f'{k}: {v}')
    t0 = time.time()
    model = build_detector(args.arch)
    data = random_batch(model, 2, args.size)
    model.train()
    losses = model(**data, mode='loss')
    loss = sum(v for k, v in losses.items() if 'loss' in k for v in (v if isinstance(v, list) else [v]))
    loss.backward()
    model.eval()
    with torch.no_grad():
        preds = model(**data, mode='predict')
    print(f'Mask R-CNN + HireMLP-{args.arch}: train loss {loss.item():.3f}, '
          f'{len(preds[0].pred_instances)} predictions on image 0, {time.time() - t0:.1f} s')
    print('smoke check passed')


if __name__ == '__main__':
    main()
