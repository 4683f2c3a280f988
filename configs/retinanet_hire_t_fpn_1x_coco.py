# RetinaNet, Hire-MLP-Tiny backbone, FPN, COCO 1x (12 epochs, 1333x800).
# Recipe: PVT's RetinaNet (AdamW lr 1e-4, weight decay 1e-4) for 16 images per step.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './_base_/exact_resume.py']
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
    # P3-P7 as in PVT: the stride-4 stage is not used, extra levels come from the input.
    neck=dict(in_channels=[64, 128, 320, 512], start_level=1, add_extra_convs='on_input'))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
auto_scale_lr = dict(enable=True, base_batch_size=16)

train_dataloader = _base_.exact_resume_train_dataloader  # bitwise-exact --resume
