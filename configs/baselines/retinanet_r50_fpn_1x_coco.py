# RetinaNet, ResNet-50 backbone, FPN, COCO 1x.
# retinanet_hire_s_fpn_1x_coco.py with only the backbone, the neck's input widths and the pretrained
# weights changed (same schedule, optimizer, drop path, data and seeds): the paper's
# claim on equal terms.
# Pretrained weights: torchvision's ResNet-50 (what mmdet's 'torchvision://resnet50' names),
# downloaded once into torch.hub's cache; a local copy instead:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/resnet50_torchvision.pth
_base_ = ['../retinanet_hire_s_fpn_1x_coco.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

pretrained = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,  # mmdet's ResNet recipe: stem and stage 1 frozen, BN statistics too
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
