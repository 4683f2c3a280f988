"""The detection matcher of the deploy checks: near-ties that float rounding can flip are
explained, every other difference is reported."""
from collections import Counter

import numpy as np
import pytest
import torch

from mmhire.deploy.detection_match import match_detections

NMS_IOU, TOP_K, SCORE_THR = 0.5, 10, 0.05


def dets(rows):
    """[(x1, y1, x2, y2, score, label), ...] -> (boxes, scores, labels)."""
    a = np.array(rows, np.float64).reshape(-1, 6)
    return a[:, :4], a[:, 4], a[:, 5].astype(int)


def match(a, b, **kw):
    return match_detections(dets(a), dets(b), nms_iou=NMS_IOU, keep_top_k=TOP_K,
                            score_thr=SCORE_THR, **kw)


def test_equal_lists_match_in_any_order():
    a = [(0, 0, 10, 10, .9, 0), (20, 20, 40, 40, .8, 1), (5, 5, 30, 30, .3, 0)]
    r = match(a, a[::-1])
    assert r['matched'] == 3 and not r['unexplained']
    assert r['max_score_diff'] == 0 and r['max_box_diff'] == 0
    assert sum(r['explained'].values()) == 0


def test_noise_and_a_swapped_nms_tie_are_explained():
    # two overlapping boxes of one class at scores 1e-6 apart: each side's NMS kept the other
    ours = [(0, 0, 10, 10, .9, 0), (50, 50, 70, 70, .6000004, 1), (80, 0, 99, 20, .2, 2)]
    theirs = [(0, 0, 10, 10, .9000008, 0), (52, 50, 72, 70, .6000011, 1),
              (80, 0, 99, 20, .1999992, 2)]
    r = match(ours, theirs)
    assert not r['unexplained'], r
    assert r['matched'] == 2 and r['explained']['nms order'] == 2
    assert r['max_score_diff'] == pytest.approx(8e-7)


def test_a_tie_at_the_top_k_cut_off_is_explained():
    common = [(10 * i, 0, 10 * i + 8, 8, .9 - .05 * i, 0) for i in range(9)]
    ours = common + [(0, 50, 8, 58, .3000004, 1)]
    theirs = common + [(50, 50, 58, 58, .3, 2)]  # the 10th place went to an equal score
    r = match(ours, theirs)
    assert not r['unexplained'], r
    assert r['explained']['cut-off'] == 2


def test_a_cascade_behind_a_tie_is_explained():
    # ours kept X, theirs kept Y (a tie); Y suppresses Z in theirs, X does not in ours
    x, y, z = (0, 0, 10, 10), (2, 0, 12, 10), (5, 0, 15, 10)
    ours = [(*x, .6000003, 0), (*z, .4, 0)]
    theirs = [(*y, .6, 0)]
    r = match(ours, theirs)
    assert not r['unexplained'], r
    assert r['explained'] == dict(r['explained'], **{'nms order': 2, 'cascade': 1})


def test_an_overlap_at_the_nms_threshold_is_explained():
    # IoU(a, b) = 0.5 exactly: whether a suppresses b is a rounding decision
    a, b = (0, 0, 10, 10), (0, 0, 10, 5)
    r = match([(*a, .7, 0), (*b, .5, 0)], [(*a, .7, 0)])
    assert not r['unexplained'] and r['explained']['nms overlap'] == 1


@pytest.mark.parametrize('change', ['missing', 'score', 'box', 'label', 'extra'])
def test_real_differences_are_reported(change):
    ours = [(0, 0, 10, 10, .9, 0), (50, 50, 70, 70, .6, 1), (80, 0, 99, 20, .2, 2)]
    theirs = [list(d) for d in ours]
    if change == 'missing':  # a confident box lost
        del theirs[1]
    elif change == 'score':  # a score off by more than rounding
        theirs[1][4] += 1e-3
    elif change == 'box':  # a box moved off the object (IoU 0.11)
        theirs[1][:4] = [66, 50, 86, 70]
    elif change == 'label':
        theirs[1][5] = 2
    else:  # a box that PyTorch does not have, well above the cut-off
        theirs.append([30, 30, 40, 40, .7, 0])
    r = match(ours, theirs)
    assert r['unexplained'], r
    assert all(score in (.6, .7, .6 + 1e-3) for _, _, _, score, _ in r['unexplained'])
    # the same difference hidden in a full list is still found: only the last place is a tie
    filler = [(10 * i, 200, 10 * i + 8, 208, .95 - .01 * i, 3) for i in range(TOP_K - 3)]
    r = match(filler + ours, filler + [tuple(d) for d in theirs])
    assert r['unexplained'], r


def test_bad_lists_are_refused():
    with pytest.raises(ValueError, match='as many boxes, scores and labels'):
        match_detections((np.zeros((2, 4)), np.zeros(3), np.zeros(2)), dets([]),
                         nms_iou=.5, keep_top_k=10)


def nms_top_k(boxes, scores, labels, top_k):
    from mmcv.ops import batched_nms
    keep_score = scores > SCORE_THR
    boxes, scores, labels = boxes[keep_score], scores[keep_score], labels[keep_score]
    _, keep = batched_nms(boxes, scores, labels, dict(type='nms', iou_threshold=NMS_IOU))
    keep = keep[:top_k]
    return boxes[keep], scores[keep], labels[keep]


def clustered_candidates(rng, clusters=12, per=5):
    """Candidates as a random detector makes them: clusters of overlapping boxes of one label
    whose scores agree to 3e-6 (near-ties at NMS), on a few score levels (ties at the cut-off)."""
    n = clusters * per
    centers = np.repeat(rng.uniform(10, 90, (clusters, 2)), per, 0) + rng.uniform(-3, 3, (n, 2))
    sizes = np.repeat(rng.uniform(10, 30, (clusters, 2)), per, 0) * rng.uniform(.9, 1.1, (n, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], 1)
    scores = (np.repeat(rng.choice([.9, .6, .3, .06], clusters), per)
              + rng.uniform(-3e-6, 3e-6, n))
    labels = np.repeat(rng.integers(0, 2, clusters), per)
    return (torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32),
            torch.tensor(labels))


@pytest.mark.parametrize('top_k', [10, 100], ids=['cut-off', 'no-cut-off'])
def test_jittered_nms_outputs_differ_only_at_ties(top_k):
    """The same candidates through mmcv's NMS and top-k twice, the second time with every score
    moved by up to 1e-6 (rounding noise) and every box coordinate by up to 1e-4 px: the lists
    differ in most trials (swapped ties at NMS, at the cut-off, and what they suppress in
    turn), and the matcher explains every difference. The same trials with one real change
    (a detection dropped, a score moved by 1e-3) are reported."""
    rng = np.random.default_rng(0)
    reasons, differing, trials = Counter(), 0, 200
    caught = Counter()
    for _ in range(trials):
        boxes, scores, labels = clustered_candidates(rng)
        ours = nms_top_k(boxes, scores, labels, top_k)
        theirs = nms_top_k(boxes + torch.empty_like(boxes).uniform_(-1e-4, 1e-4),
                           scores + torch.empty_like(scores).uniform_(-1e-6, 1e-6), labels,
                           top_k)
        kw = dict(nms_iou=NMS_IOU, keep_top_k=top_k, score_thr=SCORE_THR)
        r = match_detections(ours, theirs, **kw)
        assert not r['unexplained'], r
        reasons.update(r['explained'])
        differing += r['matched'] < max(r['ours'], r['theirs'])
        i = int(rng.integers(0, len(theirs[1]) - 1))  # any but the last place
        others = torch.arange(len(theirs[1])) != i
        caught['dropped'] += bool(match_detections(
            ours, [t[others] for t in theirs], **kw)['unexplained'])
        moved = theirs[1].clone()
        moved[i] += 1e-3
        caught['score'] += bool(match_detections(
            ours, (theirs[0], moved, theirs[2]), **kw)['unexplained'])
    assert differing > trials // 2, differing  # the jitter did flip ties
    assert reasons['nms order'] > 0 and reasons['cascade'] > 0, reasons
    assert (reasons['cut-off'] > 0) == (top_k == 10), reasons
    # a dropped detection hides only where it had a tie partner left in the list
    assert caught['score'] == trials and caught['dropped'] > 0.9 * trials, caught
