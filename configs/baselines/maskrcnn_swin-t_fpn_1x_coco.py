# Mask R-CNN, Swin-T backbone, FPN, COCO 1x.
# maskrcnn_hire_s_fpn_1x_coco.py with only the backbone, the neck's input widths and the pretrained
# weights changed (same schedule, optimizer, drop path, data and seeds): the paper's
# claim on equal terms.
# Pretrained weights: the Swin authors' Swin-T (ImageNet-1K),
# downloaded once into torch.hub's cache; a local copy instead:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/swin_tiny_patch4_window7_224.pth
_base_ = ['../maskrcnn_hire_s_fpn_1x_coco.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

pretrained = 'https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.1,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        convert_weights=True,  # the official Swin checkpoint's keys
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
