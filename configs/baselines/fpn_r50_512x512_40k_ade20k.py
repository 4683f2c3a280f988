# Semantic FPN, ResNet-50 (V1c) backbone, ADE20K 40k.
# fpn_hire_s_512x512_40k_ade20k.py with only the backbone, the neck's input widths and the pretrained
# weights changed (same schedule, optimizer, drop path, data and seeds): the paper's
# claim on equal terms.
# Pretrained weights: mmseg's ResNet-50 V1c (what 'open-mmlab://resnet50_v1c' names),
# downloaded once into torch.hub's cache; a local copy instead:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/resnet50_v1c.pth
_base_ = ['../fpn_hire_s_512x512_40k_ade20k.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',  # mmseg's ResNet-50 (deep stem), as its own Semantic FPN uses
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
