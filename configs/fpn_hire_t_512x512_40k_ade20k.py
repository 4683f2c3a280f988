# Semantic FPN, Hire-MLP-Tiny backbone, ADE20K, 512x512 crops, 40k iterations.
# The authors' recipe, as in their mmseg-v0.11/configs/sem_fpn/hire_mlp_small_512x512_ade20k.py
# (ggjy/Hire-Wave-MLP.pytorch; they release no Tiny or Base file): 40k iterations, AdamW lr
# 2e-4, weight decay 0.05, poly (power 0.9), drop_path 0.1, SyncBN, 4 images per GPU. The file
# does not say how many GPUs: base_batch_size 32 below assumes 8.
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', './_base_/exact_resume.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

arch = 'tiny'
# the authors' released ImageNet-1K weights, downloaded once into torch.hub's cache; a local
# copy instead: --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_tiny.pth
pretrained = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_tiny.pth'
model = dict(
    pretrained=None,  # the ResNet base sets an open-mmlab:// URL here
    backbone=dict(
        _delete_=True,
        type='HireMLP',
        arch=arch,
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),  # reverted to BN on one process
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(channels=128, num_classes=150))

train_dataloader = dict(batch_size=4)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
auto_scale_lr = dict(enable=True, base_batch_size=32)
