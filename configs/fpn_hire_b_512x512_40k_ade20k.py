# Semantic FPN, Hire-MLP-Base backbone, ADE20K 40k: the tiny recipe with the base backbone.
_base_ = ['./fpn_hire_t_512x512_40k_ade20k.py']

arch = 'base'
pretrained = 'checkpoints/hire_mlp_base.pth'
model = dict(backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)))
