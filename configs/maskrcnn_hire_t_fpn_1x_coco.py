# Mask R-CNN, Hire-MLP-Tiny backbone, FPN, COCO 1x (12 epochs, 1333x800).
# Recipe: PVT's Mask R-CNN (AdamW lr 2e-4, weight decay 1e-4) for 16 images per step.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', './_base_/exact_resume.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

arch = 'tiny'
# the authors' released ImageNet-1K weights, downloaded once into torch.hub's cache; a local
# copy instead: --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_tiny.pth
pretrained = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_tiny.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch=arch,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
# The learning rate above is for 16 images per step; the Runner rescales it to yours.
auto_scale_lr = dict(enable=True, base_batch_size=16)

train_dataloader = _base_.exact_resume_train_dataloader  # bitwise-exact --resume
