# Mask R-CNN, Hire-MLP-Small backbone, FPN, COCO 1x: the tiny recipe with the small backbone.
_base_ = ['./maskrcnn_hire_t_fpn_1x_coco.py']

arch = 'small'
# downloaded once into torch.hub's cache; a local copy: --cfg-options
# model.backbone.init_cfg.checkpoint=checkpoints/hire_mlp_small.pth
pretrained = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log/hire_mlp_small.pth'
model = dict(backbone=dict(arch=arch, init_cfg=dict(checkpoint=pretrained)))
