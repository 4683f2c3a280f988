# RetinaNet, PVTv2-b2 backbone, FPN, COCO 1x.
# retinanet_hire_s_fpn_1x_coco.py with only the backbone, the neck's input widths and the pretrained
# weights changed (same schedule, optimizer, drop path, data and seeds): the paper's
# claim on equal terms.
# Pretrained weights: the PVTv2 authors' PVTv2-b2 (ImageNet-1K),
# downloaded once into torch.hub's cache; a local copy instead:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/pvt_v2_b2.pth
_base_ = ['../retinanet_hire_s_fpn_1x_coco.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

pretrained = 'https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PyramidVisionTransformerV2',
        embed_dims=64,
        num_layers=[3, 4, 6, 3],
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
