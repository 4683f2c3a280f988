"""Two detection lists of the same image compared, so that only near-ties may differ.

An exported detector computes the same scores as PyTorch up to float rounding (1e-7 here), but
its NMS and top-k cut-off are discrete decisions: two candidates whose scores or overlaps tie to
within that rounding may come out in the other order, and a different box is kept. How many do
so depends on the CPU's rounding, so a count of allowed differences passes on one machine and
fails on another. Here every detection must either match one of the other side (same label,
score within ``score_tol``, box overlap at least ``match_iou``) or be explained by a tie that
rounding can flip; anything else is a real difference.

The ties (``eps``: the rounding noise allowed in a score, ``iou_eps`` in an overlap):

- ``cut-off``: the other list is full (``keep_top_k`` detections) and this score is at or below
  its last one (plus ``eps``): the cut-off alone keeps it out there.
- ``score threshold``: the score is within ``eps`` of the score threshold.
- ``nms order``: an unmatched detection of the other list with the same label overlaps this one
  as NMS counts overlap (IoU at least ``nms_iou - iou_eps``) and has a score within ``eps``:
  the two competed and their order flipped.
- ``nms overlap``: a detection of the other list with the same label and a score at least as
  high (less ``eps``) overlaps this one within ``iou_eps`` of the NMS threshold: whether it
  suppressed this one is a rounding decision.
- ``cascade``: a detection of the other list with the same label and a higher score overlaps
  this one past the NMS threshold, so it suppressed this one there, and here it is missing for
  a tie of its own, or its match here is a different box (a tie partner, or a box clipped at
  another border, more than ``box_eps`` away) that does not overlap this one that much.
"""
import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps

TIE_REASONS = ('cut-off', 'score threshold', 'nms order', 'nms overlap', 'cascade')


def box_iou(a, b):
    """IoU of every box of ``a`` with every box of ``b`` (float64 x1y1x2y2 arrays): mmdet's."""
    a, b = (torch.from_numpy(boxes).reshape(-1, 4) for boxes in (a, b))
    return bbox_overlaps(a, b).numpy()


def _as_arrays(dets):
    boxes, scores, labels = dets
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f'a detection list needs as many boxes, scores and labels; got '
                         f'{len(boxes)}, {len(scores)} and {len(labels)}')
    return boxes, scores, labels


def _greedy_match(a, b, score_tol, match_iou):
    """Pairs (i, j): in order of ``a``'s scores, each detection takes the unpaired detection of
    ``b`` with its label and a score within ``score_tol`` that it overlaps most (IoU at least
    ``match_iou``)."""
    (boxes_a, scores_a, labels_a), (boxes_b, scores_b, labels_b) = a, b
    iou = box_iou(boxes_a, boxes_b)
    ok = ((labels_a[:, None] == labels_b[None, :])
          & (np.abs(scores_a[:, None] - scores_b[None, :]) <= score_tol) & (iou >= match_iou))
    pairs, taken = [], np.zeros(len(boxes_b), bool)
    for i in np.argsort(-scores_a, kind='stable'):
        cand = np.nonzero(ok[i] & ~taken)[0]
        if len(cand):
            j = cand[int(np.argmax(iou[i, cand]))]
            taken[j] = True
            pairs.append((int(i), int(j)))
    return pairs


def match_detections(ours, theirs, *, nms_iou, keep_top_k, score_thr=0., eps=1e-5,
                     iou_eps=1e-4, score_tol=1e-4, match_iou=0.9, box_eps=1e-2):
    """Match two detection lists of one image and explain every difference by a near-tie.

    Args:
        ours, theirs: ``(boxes (n, 4) x1y1x2y2, scores (n,), labels (n,))`` each, arrays or
            tensors; ``ours`` is the reference (PyTorch).
        nms_iou (float): The IoU threshold both sides' NMS used.
        keep_top_k (int): The most detections either side keeps (``max_per_img``).
        score_thr (float): The score threshold both sides applied.
        eps (float): How far rounding may move a score, for the ties.
        iou_eps (float): How far rounding may move an overlap, for the ties.
        score_tol (float): The largest score difference of two detections that match.
        match_iou (float): The least overlap of two detections that match.
        box_eps (float): Two matched boxes further apart than this (pixels) are different
            boxes (tie partners, or a box clipped at another border), which may cause a
            cascade.

    Returns:
        dict: ``ours`` and ``theirs`` (counts), ``matched`` (count), ``max_score_diff`` and
        ``max_box_diff`` (over the matched pairs, the box in pixels), ``explained`` (a dict
        reason -> count of unmatched detections it explains, over both lists) and
        ``unexplained``: one ``(side, index, label, score, box)`` per unmatched detection that
        no tie explains, the real differences (empty when the two lists agree).
    """
    sides = [_as_arrays(ours), _as_arrays(theirs)]
    pairs = _greedy_match(sides[0], sides[1], score_tol, match_iou)
    matched = [np.zeros(len(s[1]), bool) for s in sides]
    for i, j in pairs:
        matched[0][i] = matched[1][j] = True
    score_diff = max((abs(sides[0][1][i] - sides[1][1][j]) for i, j in pairs), default=0.)
    box_diff = max((np.abs(sides[0][0][i] - sides[1][0][j]).max() for i, j in pairs),
                   default=0.)

    def static_reason(side, k):
        boxes, scores, labels = sides[side]
        o_boxes, o_scores, o_labels = sides[1 - side]
        s = scores[k]
        if len(o_scores) >= keep_top_k and s <= o_scores.min() + eps:
            return 'cut-off'
        if abs(s - score_thr) <= eps:
            return 'score threshold'
        same = o_labels == labels[k]
        iou = box_iou(boxes[k], o_boxes)[0]
        if np.any(same & ~matched[1 - side] & (iou >= nms_iou - iou_eps)
                  & (np.abs(o_scores - s) <= eps)):
            return 'nms order'
        if np.any(same & (o_scores >= s - eps) & (np.abs(iou - nms_iou) <= iou_eps)):
            return 'nms overlap'
        return None

    reason = [dict() for _ in sides]
    for side in (0, 1):
        for k in np.nonzero(~matched[side])[0]:
            r = static_reason(side, int(k))
            if r:
                reason[side][int(k)] = r
    # a detection matched to a different box (its tie partner, or a box clipped elsewhere)
    twin = [dict(pairs), {j: i for i, j in pairs}]
    displaced = [{k for k, t in twin[side].items()
                  if np.abs(sides[side][0][k] - sides[1 - side][0][t]).max() > box_eps}
                 for side in (0, 1)]
    grew = True
    while grew:  # cascades: a box that suppressed this one on the other side is missing here
        grew = False
        for side in (0, 1):
            boxes, scores, labels = sides[side]
            o_boxes, o_scores, o_labels = sides[1 - side]
            causes = sorted(set(reason[1 - side]) | displaced[1 - side])
            for k in np.nonzero(~matched[side])[0]:
                if int(k) in reason[side]:
                    continue
                for f in causes:
                    if (o_labels[f] != labels[k] or o_scores[f] < scores[k] - eps
                            or box_iou(boxes[k], o_boxes[f])[0, 0] < nms_iou - iou_eps):
                        continue
                    t = twin[1 - side].get(f)  # f's twin here must not suppress k here
                    if t is None or box_iou(boxes[k], boxes[t])[0, 0] < nms_iou + iou_eps:
                        reason[side][int(k)] = 'cascade'
                        grew = True
                        break

    explained = {r: 0 for r in TIE_REASONS}
    unexplained = []
    for side in (0, 1):
        boxes, scores, labels = sides[side]
        for k in np.nonzero(~matched[side])[0]:
            if int(k) in reason[side]:
                explained[reason[side][int(k)]] += 1
            else:
                unexplained.append((('ours', 'theirs')[side], int(k), int(labels[k]),
                                    float(scores[k]), boxes[k].round(2).tolist()))
    return dict(ours=len(sides[0][1]), theirs=len(sides[1][1]), matched=len(pairs),
                max_score_diff=float(score_diff), max_box_diff=float(box_diff),
                explained=explained, unexplained=unexplained)


def format_unexplained(result, limit=5):
    """One line per real difference (up to ``limit``), for assertion messages and reports."""
    lines = [f'{side} #{k}: label {label}, score {score:.6f}, box {box} has no match and no '
             f'near-tie explains it' for side, k, label, score, box in
             result['unexplained'][:limit]]
    more = len(result['unexplained']) - limit
    return '\n'.join(lines + ([f'... and {more} more'] if more > 0 else []))
