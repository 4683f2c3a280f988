# Mask R-CNN, ConvNeXt-T backbone, FPN, COCO 1x.
# maskrcnn_hire_s_fpn_1x_coco.py with only the backbone, the neck's input widths and the pretrained
# weights changed (same schedule, optimizer, drop path, data and seeds): the paper's
# claim on equal terms.
# Pretrained weights: mmpretrain's ConvNeXt-T (ImageNet-1K),
# downloaded once into torch.hub's cache; a local copy instead:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/convnext-tiny_in1k.pth
_base_ = ['../maskrcnn_hire_s_fpn_1x_coco.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmclassification/v0/convnext/downstream/convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXt',  # mmhire's: mmpretrain's arguments and parameter names
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.1,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))
