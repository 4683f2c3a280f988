"""The self-made demo sets: deterministic, valid, and safe for existing folders."""
import hashlib
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmhire.datasets.demo_data import DemoDataError, main, make_ade, make_coco


def digest(folder):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for f in sorted(files):
            with open(osp.join(dirpath, f), 'rb') as fh:
                h.update(f.encode() + fh.read())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a = make_coco(str(tmp_path / 'a'), num_train=3, num_val=2, size=96, seed=3)
    b = make_coco(str(tmp_path / 'b'), num_train=3, num_val=2, size=96, seed=3)
    c = make_coco(str(tmp_path / 'c'), num_train=3, num_val=2, size=96, seed=4)
    assert digest(a) == digest(b) != digest(c)
    a = make_ade(str(tmp_path / 'A'), num_train=3, num_val=2, size=96, seed=3)
    b = make_ade(str(tmp_path / 'B'), num_train=3, num_val=2, size=96, seed=3)
    assert digest(a) == digest(b)


def test_coco_set_is_valid_and_masks_match_pixels(demo_data):
    from pycocotools.coco import COCO
    root = osp.join(demo_data, 'demo_coco')
    for split in ('train', 'val'):
        coco = COCO(osp.join(root, 'annotations', f'instances_{split}.json'))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == \
            ['square', 'circle', 'triangle']
        assert len(coco.getImgIds()) == (6 if split == 'train' else 4)
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            img = cv2.imread(osp.join(root, split, info['file_name']))
            assert img.shape[:2] == (info['height'], info['width'])
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 4
            for ann in anns:
                m = coco.annToMask(ann).astype(bool)
                assert m.sum() == ann['area'] > 0
                x, y, w, h = ann['bbox']
                ys, xs = np.nonzero(m)
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
                # the shape is drawn in one colour that differs from what surrounds it
                inside = img[m].astype(float).mean(0)
                ring = cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~m
                assert np.abs(inside - img[ring].astype(float).mean(0)).sum() > 60
                core = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                if core.sum() > 20:  # one flat colour inside (JPEG blurs only the edges)
                    assert img[core].astype(float).std(0).max() < 8


def test_ade_set_layout_and_labels(demo_data):
    root = osp.join(demo_data, 'demo_ade')
    for split, n in (('training', 6), ('validation', 4)):
        images = sorted(os.listdir(osp.join(root, 'images', split)))
        labels = sorted(os.listdir(osp.join(root, 'annotations', split)))
        assert len(images) == n and [i[:-4] for i in images] == [name[:-4] for name in labels]
        for name in labels:
            seg = cv2.imread(osp.join(root, 'annotations', split, name), cv2.IMREAD_UNCHANGED)
            values = set(np.unique(seg).tolist())
            assert values <= {0, 1, 2, 3, 4} and {0, 1} <= values  # ignore band + background


def test_ade_set_reads_through_mmseg(demo_data):
    from mmengine.registry import DefaultScope
    from mmseg.datasets import ADE20KDataset
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = ADE20KDataset(data_root=osp.join(demo_data, 'demo_ade'),
                           data_prefix=dict(img_path='images/training',
                                            seg_map_path='annotations/training'),
                           pipeline=[dict(type='LoadAnnotations', reduce_zero_label=True)])
        assert len(ds) == 6
        seg = ds[0]['gt_seg_map']
    assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3, 255}  # 0 became the ignore index 255


def test_never_touches_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / 'demo_coco'
    mine.mkdir()
    (mine / 'precious.txt').write_text('user data')
    with pytest.raises(DemoDataError, match='was not written by this tool'):
        make_coco(str(mine), num_train=2, num_val=1, size=64)
    with pytest.raises(DemoDataError, match='was not written by this tool'):
        make_coco(str(mine), num_train=2, num_val=1, size=64, overwrite=True)
    assert (mine / 'precious.txt').read_text() == 'user data'


def test_reuse_and_overwrite_of_its_own_data(tmp_path, capsys):
    out = str(tmp_path / 'demo_coco')
    make_coco(out, num_train=2, num_val=1, size=64, seed=0)
    stamp = os.path.getmtime(osp.join(out, 'annotations', 'instances_train.json'))
    make_coco(out, num_train=2, num_val=1, size=64, seed=0)  # same settings: reused
    assert os.path.getmtime(osp.join(out, 'annotations', 'instances_train.json')) == stamp
    with pytest.raises(DemoDataError, match='--overwrite'):
        make_coco(out, num_train=3, num_val=1, size=64, seed=0)
    make_coco(out, num_train=3, num_val=1, size=64, seed=0, overwrite=True)
    with open(osp.join(out, 'annotations', 'instances_train.json')) as f:
        assert len(json.load(f)['images']) == 3
    with pytest.raises(SystemExit, match='error: .*--overwrite'):
        main(['--kind', 'coco', '--out', str(tmp_path), '--num-train', '5', '--size', '64'])
