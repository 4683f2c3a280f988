"""The RPN's proposals in an mmdeploy export, made the way mmdet makes them.

mmdeploy 1.3.1's rewrite of ``RPNHead.predict_by_feat`` differs from mmdet 3.x in ways that
change which proposals a two-stage detector (Mask R-CNN) sees, and so its final boxes:

- mmdet runs the RPN's NMS per pyramid level (``batched_nms`` with the level as the class);
  mmdeploy runs one NMS over all levels, so a box of one level suppresses boxes of another.
- mmdet applies no score threshold to proposals (its RPN ``test_cfg`` has none); mmdeploy falls
  back to the deploy config's detection threshold (0.05) and drops every proposal below it.
- mmdet drops boxes no wider or taller than ``min_bbox_size``; mmdeploy keeps them.
- With fewer than ``max_per_img`` proposals, mmdeploy's NMS output keeps its all-zero padding
  row, which the RoI head turns into a detection at (0, 0).

Here each level's candidates (its ``nms_pre`` best, decoded and clipped as mmdeploy does) are
one class of mmdeploy's multi-class NMS: suppression stays inside a level, the best
``max_per_img`` over all levels are kept, sorted by score, no score threshold applies,
boxes under ``min_bbox_size`` get a zero score, which the NMS never keeps, and the padding row
becomes a copy of the best proposal.
What still differs, and cannot be expressed in a graph whose only input is the padded image:
boxes are clipped at the padded network input, not at the resized image inside it.
"""
import torch
import torch.nn.functional as F


def rpn_proposals_per_level(head, cls_scores, bbox_preds, img_shape, cfg):
    """``(dets (B, K, 5), level of each (B, K))``: mmdet's RPN test-time proposals, in ops that
    export with dynamic sizes (under mmdeploy's rewriting context)."""
    from mmdeploy.codebase.mmdet.deploy import gather_topk
    from mmdeploy.mmcv.ops import multiclass_nms

    levels = len(cls_scores)
    batch = cls_scores[0].shape[0]
    nms_pre = cfg.get('nms_pre', -1)
    anchors_per_level = head.prior_generator.grid_priors(
        [s.shape[-2:] for s in cls_scores], device=cls_scores[0].device)
    all_boxes, all_scores = [], []
    for level, (score, delta, anchors) in enumerate(zip(cls_scores, bbox_preds,
                                                        anchors_per_level)):
        score = score.permute(0, 2, 3, 1)
        if head.use_sigmoid_cls:
            score = score.reshape(batch, -1).sigmoid()
        else:  # softmax RPN: the first of the two is the object's
            score = score.reshape(batch, -1, 2).softmax(-1)[..., 0]
        score = score.reshape(batch, -1, 1)
        delta = delta.permute(0, 2, 3, 1).reshape(batch, -1, head.bbox_coder.encode_size)
        anchors = anchors.unsqueeze(0)
        if nms_pre > 0:  # mmdeploy's topk rewrite makes k min(nms_pre, n) in the graph
            _, top = score.squeeze(2).topk(nms_pre)
            delta, score = gather_topk(delta, score, inds=top, batch_size=batch, is_batched=True)
            anchors = gather_topk(anchors, inds=top, batch_size=batch, is_batched=False)
        boxes = head.bbox_coder.decode(anchors, delta, max_shape=img_shape)
        if cfg.get('min_bbox_size', -1) >= 0:  # mmdet drops boxes this thin; a zero score does
            wh = boxes[..., 2:] - boxes[..., :2]
            score = score * (wh > cfg.min_bbox_size).all(-1, keepdim=True).to(score.dtype)
        all_boxes.append(boxes)
        # the level is the class: this level's column holds the score, the others zero
        all_scores.append(F.pad(score, (level, levels - 1 - level)))
    max_per_img = cfg.get('max_per_img', 1000)
    dets, levels = multiclass_nms(torch.cat(all_boxes, 1), torch.cat(all_scores, 1),
                                  max_output_boxes_per_class=max_per_img,
                                  iou_threshold=cfg.nms.get('iou_threshold', 0.7),
                                  score_threshold=0., pre_top_k=-1, keep_top_k=max_per_img,
                                  nms_type=cfg.nms.get('type', 'nms'))
    # mmdeploy's NMS appends an all-zero row, kept whenever fewer than max_per_img proposals
    # survive: a zero-size proposal mmdet never makes, which the RoI head turns into a box at
    # (0, 0). A copy of the best proposal instead adds nothing: the RoI head's NMS suppresses
    # its twin detections (IoU 1, equal scores).
    return torch.where(dets[..., 4:] > 0, dets, dets[:, :1]), levels


def register_rpn_per_level_nms():
    """Make mmdeploy's onnxruntime exports use :func:`rpn_proposals_per_level` (a rewriter for
    that backend takes precedence over mmdeploy's default one). Idempotent."""
    from mmdeploy.core import FUNCTION_REWRITER
    if getattr(register_rpn_per_level_nms, 'done', False):
        return

    @FUNCTION_REWRITER.register_rewriter(
        func_name='mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
        backend='onnxruntime')
    def rpn_head__predict_by_feat__per_level(self, cls_scores, bbox_preds, score_factors=None,
                                             batch_img_metas=None, cfg=None, rescale=False,
                                             with_nms=True, **kwargs):
        if not with_nms:  # mmdet's two-stage detectors always ask for NMS
            from mmhire.errors import DeployError
            raise DeployError('mmhire exports the RPN with its NMS only (with_nms=True)')
        cfg = self.test_cfg if cfg is None else cfg
        return rpn_proposals_per_level(self, cls_scores, bbox_preds,
                                       batch_img_metas[0]['img_shape'], cfg)

    register_rpn_per_level_nms.done = True
