# Semantic FPN, Hire-MLP-Small backbone, ADE20K 40k: the tiny recipe with the small backbone.
_base_ = ['./fpn_hire_t_512x512_40k_ade20k.py']

arch = 'small'
# downloaded once into torch.hub's cache; a local copy: --cfg-options
# model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_small.pth
pretrained = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_small.pth'
model = dict(backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)))
