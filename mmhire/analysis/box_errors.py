"""What a detector's picture shows, counted per ground-truth object: found or missed, a second
box of another class on it, a second box of its own class, boxes on nothing.

COCO mAP rewards finding every object with the right class somewhere in the ranking; it barely
moves when a confident wrong-class box sits on an object next to the right one, which is exactly
what a reader of a drawn picture sees first. These counts put a number on that picture.
"""
import json
from collections import Counter

import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps


def count_box_errors(results, ann_file, classes=None, score_thr=0.5, match_iou=0.5,
                     touch_iou=0.3):
    """Count per ground-truth object what the boxes at ``score >= score_thr`` do.

    Args:
        results (list[dict]): Predictions per image, as mmdet's ``DumpDetResults`` saves them
            (``tools/test.py --out``): ``img_id`` and ``pred_instances`` with ``bboxes``
            (x1y1x2y2 in the image's own pixels), ``labels`` and ``scores``.
        ann_file (str): The COCO annotation file the images come from.
        classes (sequence[str], optional): The dataset's class names in label order (the config's
            ``metainfo.classes``); default: the annotation file's categories by id.
        score_thr (float): Boxes below this score are not counted (the drawing threshold).
        match_iou (float): A box of the object's class with at least this IoU finds it.
        touch_iou (float): A box of another class with at least this IoU sits on the object.

    Returns:
        dict: ``score_thr``, ``objects``, ``found``, ``wrong_class`` (objects with a box of
        another class on them), ``duplicate`` (objects with two or more boxes of their own
        class), ``stray`` (boxes touching no object), ``images``, ``clean_images`` (every object
        found, none with a wrong-class or duplicate box, no stray box) and ``confusions`` (a
        Counter of (object class, wrong box class) names).
    """
    with open(ann_file) as f:
        coco = json.load(f)
    categories = sorted(coco['categories'], key=lambda c: c['id'])
    names = list(classes) if classes is not None else [c['name'] for c in categories]
    label_of = {}
    for c in categories:
        if c['name'] in names:
            label_of[c['id']] = names.index(c['name'])
    objects_of = {img['id']: [] for img in coco['images']}
    for a in coco['annotations']:
        if a.get('iscrowd', 0) or a['category_id'] not in label_of:
            continue
        x, y, w, h = a['bbox']
        objects_of.setdefault(a['image_id'], []).append((label_of[a['category_id']],
                                                         [x, y, x + w, y + h]))
    by_image = {r['img_id']: r['pred_instances'] for r in results}
    missing = [i for i in objects_of if i not in by_image]
    if missing:
        raise ValueError(f'count_box_errors: no predictions for {len(missing)} of the '
                         f'{len(objects_of)} images of {ann_file} (e.g. image id {missing[0]}); '
                         f'were the results made on another set?')

    counts = Counter()
    confusions = Counter()
    for img_id, objects in objects_of.items():
        pred = by_image[img_id]
        scores = np.asarray(pred['scores'], float).reshape(-1)
        keep = scores >= score_thr
        boxes = np.asarray(pred['bboxes'], float).reshape(-1, 4)[keep]
        labels = np.asarray(pred['labels']).reshape(-1)[keep]
        gt_labels = np.array([lab for lab, _ in objects], int)
        gt_boxes = torch.tensor([box for _, box in objects], dtype=torch.float64).reshape(-1, 4)
        iou = bbox_overlaps(gt_boxes, torch.from_numpy(boxes)).numpy()  # objects x boxes
        clean = True
        for i, lab in enumerate(gt_labels):
            own = (labels == lab) & (iou[i] >= match_iou)
            other = (labels != lab) & (iou[i] >= touch_iou)
            counts['found'] += bool(own.any())
            counts['duplicate'] += bool(own.sum() > 1)
            counts['wrong_class'] += bool(other.any())
            for j in np.nonzero(other)[0]:
                confusions[(names[lab], names[labels[j]])] += 1
            clean &= bool(own.sum() == 1 and not other.any())
        stray = int((iou < touch_iou).all(0).sum()) if len(objects) else len(boxes)
        counts['stray'] += stray
        counts['clean_images'] += clean and not stray
    return dict(score_thr=score_thr, objects=sum(len(o) for o in objects_of.values()),
                found=counts['found'], wrong_class=counts['wrong_class'],
                duplicate=counts['duplicate'], stray=counts['stray'], images=len(objects_of),
                clean_images=counts['clean_images'], confusions=confusions)


def format_box_errors(c):
    """One line for people: the counts of :func:`count_box_errors`."""
    return (f"at score >= {c['score_thr']:g}: {c['found']}/{c['objects']} objects found with the "
            f"right class, {c['wrong_class']} also carry a box of another class, "
            f"{c['duplicate']} a second box of their own class, {c['stray']} boxes on no object; "
            f"{c['clean_images']}/{c['images']} images with exactly one right box per object")
