# RetinaNet, Hire-MLP-Base backbone, FPN, COCO 1x: the tiny recipe with the base backbone.
_base_ = ['./retinanet_hire_t_fpn_1x_coco.py']

arch = 'base'
# downloaded once into torch.hub's cache; a local copy: --cfg-options
# model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_base.pth
pretrained = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_base.pth'
model = dict(backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)))
