# The demo: configs/maskrcnn_hire_t_fpn_1x_coco.py trained from scratch on the self-made shapes
# set (python -m mmhire.datasets.demo_data), sized for a 2-core CPU (docs/demo.md has the
# measured time and mAP). Same detector and HireMLP-T backbone; changed: data, image scale (192),
# schedule, head widths (FPN / heads 128 channels, 1 mask conv), the box head (4 convs with
# GroupNorm, then the fc), proposals and RoI sampling, RoIAlign sampling points and no loader
# workers.
_base_ = ['../maskrcnn_hire_t_fpn_1x_coco.py']

data_root = 'data/demo_coco/'
metainfo = dict(classes=('square', 'circle', 'triangle'),
                palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30)])
image_scale = (192, 192)
width = 128
num_classes = 3

model = dict(
    backbone=dict(init_cfg=None),  # from scratch: no ImageNet weights needed
    neck=dict(out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        # One sampling point per RoIAlign bin: the adaptive count (up to 4x4 on the largest
        # shapes) made RoIAlign's forward alone 20% of a training step; the time saved buys
        # the eighth epoch.
        bbox_roi_extractor=dict(out_channels=width, roi_layer=dict(sampling_ratio=1)),
        # Trained from scratch, the base's two-fc box head classified only 80% of the
        # ground-truth boxes right after the whole schedule and was unsure on shifted boxes, so
        # most shapes got a second, wrong-class box. Convolutions share their weights over the
        # 7x7 RoI cells and learn the shapes in far fewer steps (mmdet's 4conv1fc head with
        # GroupNorm, as in its from-scratch configs; measured in docs/demo.md).
        # The classification loss weighs 3 (mmdet's default 1): the remaining mistakes were
        # boxes of another class on a shape (mostly a square box on a circle, from a proposal
        # around the circle with a margin), not the box or mask fit, and a larger share of the
        # gradient for the classifier, in the shared features too, cut them by a third
        # (docs/demo.md).
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', in_channels=width,
                       conv_out_channels=width, fc_out_channels=256,
                       norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
                       num_classes=num_classes,
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                     loss_weight=3.0)),
        mask_roi_extractor=dict(out_channels=width, roi_layer=dict(sampling_ratio=1)),
        mask_head=dict(num_convs=1, in_channels=width, conv_out_channels=width,
                       num_classes=num_classes)),
    train_cfg=dict(
        # 300 proposals per image for the RoI head (the base: 1000) from the best 500 boxes of
        # each level: a few shapes per image need no more (3% off a step against 500 from 1000).
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        # Positives from IoU 0.6 (not 0.5): a loose box around a square or a circle looks like
        # a triangle's box, so boxes that loose are background. Of the 64 RoIs per image up to
        # a quarter are positive (shifted views of each shape, about four per shape); the other
        # 48 or more are what took the square boxes off the circles (a box with a margin around
        # a circle is one of them): with three negatives to a positive, and a ninth epoch, 15 of
        # the 127 val shapes carry a wrong-class box, against 30 with 32 RoIs of each kind
        # (docs/demo.md); fewer positives also mean fewer mask RoIs. They are drawn evenly
        # from three IoU bands (Libra R-CNN's sampler) instead of at random, so the near misses
        # around shapes, where the wrong-class boxes came from, are not outnumbered by empty
        # background. Two mmdet 3.3 traps kept out, both of which broke repeatable training:
        # InstanceBalancedPosSampler makes a Python set of 0-d tensors (it removes nothing and
        # its order changes from run to run), and IoUBalancedNegSampler with floor_thr=-1 sets
        # its own floor_thr to 0 after the first call, so a resumed run's first call differed
        # from the uninterrupted run's. floor_thr=0 is that steady state from the start (IoU-0
        # negatives only fill up when the bands run short, as floor_fraction is 0).
        rcnn=dict(assigner=dict(pos_iou_thr=0.6, neg_iou_thr=0.6, min_pos_iou=0.6),
                  sampler=dict(
                      _delete_=True, type='CombinedSampler', num=64, pos_fraction=1 / 4,
                      add_gt_as_proposals=True, pos_sampler=dict(type='RandomSampler'),
                      neg_sampler=dict(type='IoUBalancedNegSampler', floor_thr=0,
                                       floor_fraction=0, num_bins=3)))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# No loader workers: on a 2-core CPU two of them took cores from the training step (2.3-3.0 s per
# iteration with them, 1.2 s without), and these small images load in 10 ms per batch.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Nine epochs: the time the faster step above (fewer proposals and RoIs, fused AdamW) saves
# buys the ninth within the 12 minutes the demo aims for.
max_epochs = 9
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# fused=True: torch's one-kernel AdamW (CPU and CUDA) instead of its loop over the parameter
# tensors, which on a CPU took 5% of a step for HireMLP-T's many small tensors.
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05, fused=True),
                     clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min_ratio=0.01, begin=0,
         end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
auto_scale_lr = dict(enable=True, base_batch_size=4)  # the lr above is for 4 images per step
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
