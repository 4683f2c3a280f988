# configs/retinanet_hire_t_fpn_1x_coco.py trained from scratch on the self-made shapes set
# (python -m mmhire.datasets.demo_data), sized for a 2-core CPU like the Mask R-CNN demo next to
# it. Same detector (P3-P7 FPN, 4-conv heads, focal loss) and HireMLP-T backbone; changed: data,
# image scale (192), neck and head widths (128), the schedule and optimiser (the Mask R-CNN
# demo's: AdamW 1e-3, weight decay 0.05, clipped gradients, cosine), and no loader workers.
# tools/compare.py --checks train trains it with other backbones on the same recipe.
_base_ = ['../retinanet_hire_t_fpn_1x_coco.py']

data_root = 'data/demo_coco/'
metainfo = dict(classes=('square', 'circle', 'triangle'),
                palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30)])
image_scale = (192, 192)
width = 128

# The demo shapes are 27-77 pixels across at this scale; the base's anchors (32-406 pixels on
# P3-P7) cover them from P3 and P4.
model = dict(
    backbone=dict(init_cfg=None),  # from scratch: no ImageNet weights needed
    neck=dict(out_channels=width),
    bbox_head=dict(num_classes=3, in_channels=width, feat_channels=width))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# No loader workers: on a 2-core CPU they take cores from the training step (see the Mask
# R-CNN demo config), and these small images load in milliseconds.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
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

max_epochs = 9
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
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
