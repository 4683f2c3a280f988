"""count_box_errors: the per-object counts behind the demo's picture."""
import json

import numpy as np
import pytest

from mmhire.analysis.box_errors import count_box_errors, format_box_errors


def write_ann(tmp_path):
    ann = dict(
        images=[dict(id=1, file_name='a.png', width=100, height=100),
                dict(id=2, file_name='b.png', width=100, height=100),
                dict(id=3, file_name='c.png', width=100, height=100)],
        # category ids deliberately not 0..n-1 and not in name order
        categories=[dict(id=7, name='circle'), dict(id=3, name='square')],
        annotations=[
            dict(id=1, image_id=1, category_id=3, bbox=[10, 10, 20, 20], iscrowd=0),  # square
            dict(id=2, image_id=1, category_id=7, bbox=[50, 50, 30, 30], iscrowd=0),  # circle
            dict(id=3, image_id=2, category_id=7, bbox=[0, 0, 40, 40], iscrowd=0),    # circle
            dict(id=4, image_id=3, category_id=3, bbox=[5, 5, 10, 10], iscrowd=0),    # square
        ])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(ann))
    return str(path)


def pred(img_id, boxes, labels, scores):
    return dict(img_id=img_id, pred_instances=dict(
        bboxes=np.array(boxes, float).reshape(-1, 4), labels=np.array(labels),
        scores=np.array(scores, float)))


CLASSES = ('square', 'circle')  # label 0 = square (id 3), label 1 = circle (id 7)


def test_counts_each_kind_of_error(tmp_path):
    ann = write_ann(tmp_path)
    results = [
        # image 1: square found once; circle found, plus a square box on it, plus a low-score
        # circle duplicate that the threshold drops
        pred(1, [[10, 10, 30, 30], [50, 50, 80, 80], [52, 50, 80, 82], [50, 50, 79, 80]],
             [0, 1, 0, 1], [0.9, 0.95, 0.7, 0.2]),
        # image 2: circle found twice (duplicate) and a stray box in an empty corner
        pred(2, [[0, 0, 40, 40], [1, 1, 40, 41], [80, 80, 99, 99]], [1, 1, 0], [0.9, 0.6, 0.8]),
        # image 3: the square is only found as a circle (missed, wrong class)
        pred(3, [[5, 5, 15, 15]], [1], [0.99]),
    ]
    c = count_box_errors(results, ann, classes=CLASSES, score_thr=0.5)
    assert (c['objects'], c['images']) == (4, 3)
    assert c['found'] == 3
    assert c['wrong_class'] == 2          # the circle of image 1, the square of image 3
    assert c['duplicate'] == 1            # the circle of image 2
    assert c['stray'] == 1
    assert c['clean_images'] == 0
    assert c['confusions'] == {('circle', 'square'): 1, ('square', 'circle'): 1}
    line = format_box_errors(c)
    assert '3/4 objects found' in line and '0/3 images' in line


def test_a_clean_picture(tmp_path):
    ann = write_ann(tmp_path)
    results = [pred(1, [[10, 10, 30, 30], [50, 50, 80, 80]], [0, 1], [0.9, 0.9]),
               pred(2, [[0, 0, 40, 40], [0, 0, 40, 40]], [1, 0], [0.9, 0.3]),
               pred(3, [[5, 5, 15, 15]], [0], [0.8])]
    c = count_box_errors(results, ann, classes=CLASSES)
    assert (c['found'], c['wrong_class'], c['duplicate'], c['stray']) == (4, 0, 0, 0)
    assert c['clean_images'] == 3
    # A lower threshold lets image 2's low-score square box in: now a wrong-class box.
    c = count_box_errors(results, ann, classes=CLASSES, score_thr=0.25)
    assert (c['wrong_class'], c['clean_images']) == (1, 2)
    assert format_box_errors(c).startswith('at score >= 0.25: 4/4 objects found')


def test_default_classes_follow_category_ids(tmp_path):
    ann = write_ann(tmp_path)
    # Without classes: labels follow the categories sorted by id, square (3) then circle (7).
    results = [pred(1, [[10, 10, 30, 30], [50, 50, 80, 80]], [0, 1], [0.9, 0.9]),
               pred(2, [[0, 0, 40, 40]], [1], [0.9]), pred(3, [[5, 5, 15, 15]], [0], [0.8])]
    assert count_box_errors(results, ann)['clean_images'] == 3


def test_results_from_another_set_are_refused(tmp_path):
    ann = write_ann(tmp_path)
    with pytest.raises(ValueError, match='no predictions for 2 of the 3 images'):
        count_box_errors([pred(1, [], [], [])], ann, classes=CLASSES)
