# UperNet, Hire-MLP-Small backbone, ADE20K, 512x512 crops, 160k iterations.
# The authors' recipe: AdamW lr 1.2e-4, weight decay 0.01, 800-iteration linear warm-up, poly
# (power 1.0), drop_path 0.2, auxiliary FCN head on stage 3 (weight 0.4), 16 images per step.
_base_ = ['mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py', './_base_/exact_resume.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

arch = 'small'
pretrained = 'checkpoints/hire_mlp_small.pth'  # the authors' released ImageNet-1K weights
model = dict(
    pretrained=None,  # the ResNet base sets an open-mmlab:// URL here
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch=arch,
        drop_path_rate=0.2,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 512], channels=512, pool_scales=(1, 2, 3, 6),
                     num_classes=150),
    auxiliary_head=dict(in_channels=320, in_index=2, num_classes=150,
                        loss_decode=dict(loss_weight=0.4)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=800),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=800, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=True, base_batch_size=16)
