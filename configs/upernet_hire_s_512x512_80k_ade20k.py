# UperNet, Hire-MLP-Small backbone, ADE20K, 512x512 crops, 80k iterations.
# The authors' recipe, as in their mmseg-v0.11/configs/upernet/hire_mlp_small_512x512_ade20k.py
# (ggjy/Hire-Wave-MLP.pytorch): 80k iterations, AdamW lr 1.2e-4, weight decay 0.01,
# 800-iteration linear warm-up from 1e-6, poly (power 1.0), drop_path 0.2, auxiliary FCN head on
# stage 3 (weight 0.4), SyncBN, 4 images per GPU, mIoU every 2000 iterations. The file does not
# say how many GPUs: base_batch_size 16 below assumes mmseg's 4 (4xb4).
_base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', './_base_/exact_resume.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

arch = 'small'
# the authors' released ImageNet-1K weights, downloaded once into torch.hub's cache; a local
# copy instead: --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_small.pth
pretrained = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_small.pth'
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
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=800, end=80000, by_epoch=False),
]
auto_scale_lr = dict(enable=True, base_batch_size=16)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=2000)
