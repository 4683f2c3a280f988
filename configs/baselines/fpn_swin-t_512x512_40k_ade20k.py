# Semantic FPN, Swin-T backbone, ADE20K 40k.
# fpn_hire_s_512x512_40k_ade20k.py with only the backbone, the neck's input widths and the pretrained
# weights changed (same schedule, optimizer, drop path, data and seeds): the paper's
# claim on equal terms.
# Pretrained weights: mmseg's conversion of the Swin authors' Swin-T,
# downloaded once into torch.hub's cache; a local copy instead:
# --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/swin_tiny_patch4_window7_224.pth
_base_ = ['../fpn_hire_s_512x512_40k_ade20k.py']
custom_imports = dict(imports=['mmhire'], allow_failed_imports=False)

pretrained = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/swin_tiny_patch4_window7_224_20220317-1cdeb081.pth'
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
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
