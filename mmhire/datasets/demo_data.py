"""Self-made demo datasets: simple shapes on varied backgrounds, deterministic from a seed.

* ``coco``: a COCO-format instance segmentation set (``train/``, ``val/``,
  ``annotations/instances_{train,val}.json``) of three classes. Masks are compressed RLE of the
  exact pixels painted, so training and evaluation see precisely the drawn shapes.
* ``ade``: an ADE20K-layout semantic segmentation set (``images/{training,validation}/*.jpg``,
  ``annotations/{training,validation}/*.png``) read by mmseg's own ``ADE20KDataset``. As in
  ADE20K, label 0 means "not labelled" (a thin band around every shape here), which
  ``reduce_zero_label=True`` turns into the ignore index; the background is ADE label 1 and the
  shapes labels 2-4, so after the reduction they are classes 0-3 of ADE's 150.

    python -m mmhire.datasets.demo_data --kind all --out data

A folder this tool wrote holds a ``.mmhire_demo.json`` marker with the settings it was made with.
Running again with the same settings reuses it; other settings need ``--overwrite``, which
only ever replaces a folder that carries the marker. A folder without it is never touched.
"""
import argparse
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASSES = ('square', 'circle', 'triangle')
PALETTE = [(220, 20, 60), (0, 130, 230), (250, 170, 30)]
ADE_BACKGROUND_LABEL = 1  # ADE "wall"; shapes take CLASS index + 2
MARKER = '.mmhire_demo.json'
# Bumped whenever the drawing changes, so a folder made by an older version is not reused as if
# it held today's images (version 2: checkerboard cells shrank to texture size).
GENERATOR_VERSION = 2


from mmhire.errors import DemoDataError  # noqa: E402,F401  (raised here; defined with the rest)


# ----------------------------------------------------------------------------- drawing
def random_background(rng, h, w):
    kind = rng.integers(4)
    base = rng.integers(30, 226, size=3).astype(np.float32)
    if kind == 0:  # flat colour with noise
        img = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == 1:  # linear gradient
        other = rng.integers(30, 226, size=3).astype(np.float32)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        ramp = base + (other - base) * t[:, None]
        img = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w, 3)).copy()
    elif kind == 2:  # vertical or horizontal stripes
        other = rng.integers(30, 226, size=3).astype(np.float32)
        period = int(rng.integers(8, 32))
        vertical = rng.random() < 0.5
        band = ((np.arange(w if vertical else h) // period) % 2).astype(bool)
        band = np.broadcast_to(band[None, :] if vertical else band[:, None], (h, w))
        img = np.where(band[..., None], other, base)
    else:  # checkerboard
        other = rng.integers(30, 226, size=3).astype(np.float32)
        # Cells smaller than the smallest shape: cells the size of the squares are squares
        # that the labels call background, and a detector rightly finds them.
        cell = int(rng.integers(4, 11))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.where((((yy // cell) + (xx // cell)) % 2).astype(bool)[..., None], other, base)
    img = img + rng.normal(0, 8, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def shape_polygon(rng, cls, cx, cy, r):
    """Vertices of a shape of class ``cls`` with centre (cx, cy) and radius r."""
    angle = rng.uniform(0, 2 * np.pi)
    if cls == 0:  # square, rotated
        n, r_eff = 4, r
    elif cls == 1:  # circle as a 32-gon
        n, r_eff, angle = 32, r, 0.0
    else:  # triangle
        n, r_eff = 3, r
    t = angle + 2 * np.pi * np.arange(n) / n
    pts = np.stack([cx + r_eff * np.cos(t), cy + r_eff * np.sin(t)], axis=1)
    return np.round(pts, 1)


def contrasting_colour(rng, background_mean):
    for _ in range(20):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background_mean).sum() > 150:
            return colour
    return 255 - background_mean.astype(int)


def draw_scene(rng, h, w, max_objects=4, min_r=14, max_r=48):
    """An image and its non-overlapping shapes: list of (class, polygon)."""
    img = random_background(rng, h, w)
    shapes, discs = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            r = rng.uniform(min_r, min(max_r, min(h, w) / 3))
            cx, cy = rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)
            if all(np.hypot(cx - x, cy - y) > r + rr + 6 for x, y, rr in discs):
                break
        else:
            continue
        discs.append((cx, cy, r))
        cls = int(rng.integers(len(CLASSES)))
        poly = shape_polygon(rng, cls, cx, cy, r)
        region = img[max(int(cy - r), 0):int(cy + r), max(int(cx - r), 0):int(cx + r)]
        colour = contrasting_colour(rng, region.reshape(-1, 3).mean(0))
        cv2.fillPoly(img, [np.round(poly).astype(np.int32)], tuple(int(c) for c in colour),
                     lineType=cv2.LINE_8)
        shapes.append((cls, poly))
    return img, shapes


def polygon_mask(poly, h, w):
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return mask


# ----------------------------------------------------------------------------- writers
def _prepare(out_dir, settings, overwrite):
    """Return True when ``out_dir`` already holds this exact data set."""
    marker = osp.join(out_dir, MARKER)
    if osp.isdir(out_dir) and os.listdir(out_dir):
        if not osp.isfile(marker):
            raise DemoDataError(
                f'{out_dir} exists and was not written by this tool (no {MARKER}); refusing to '
                f'touch it. Choose another --out folder')
        with open(marker) as f:
            if json.load(f) == settings:
                return True
        if not overwrite:
            raise DemoDataError(
                f'{out_dir} holds demo data made with other settings ({marker}); pass '
                f'--overwrite to replace it, or choose another --out folder')
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return False


def _finish(out_dir, settings):
    with open(osp.join(out_dir, MARKER), 'w') as f:
        json.dump(settings, f, indent=1)


def make_coco(out_dir, num_train=300, num_val=50, size=256, seed=0, overwrite=False):
    """Write the COCO-format instance segmentation demo set; returns ``out_dir``."""
    settings = dict(kind='coco', version=GENERATOR_VERSION, num_train=num_train,
                    num_val=num_val, size=size, seed=seed)
    if _prepare(out_dir, settings, overwrite):
        return out_dir
    rng = np.random.default_rng(seed)
    categories = [dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(CLASSES)]
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    ann_id = 1
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            h = int(size * rng.uniform(0.75, 1.0)) // 2 * 2
            w = int(size * rng.uniform(0.75, 1.25)) // 2 * 2
            img, shapes = draw_scene(rng, h, w, min_r=size / 14, max_r=size / 5)
            image_id = len(images) + 1
            file_name = f'{split}_{i:05d}.jpg'
            cv2.imwrite(osp.join(out_dir, split, file_name), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name, height=h, width=w))
            for cls, poly in shapes:
                rle = mask_utils.encode(np.asfortranarray(polygon_mask(poly, h, w)))
                rle['counts'] = rle['counts'].decode('ascii')
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=cls + 1, iscrowd=0,
                    area=float(mask_utils.area(rle)),
                    bbox=[float(v) for v in mask_utils.toBbox(rle)],
                    segmentation=rle))
                ann_id += 1
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    _finish(out_dir, settings)
    return out_dir


def make_ade(out_dir, num_train=200, num_val=40, size=256, seed=0, overwrite=False):
    """Write the ADE20K-layout semantic segmentation demo set; returns ``out_dir``."""
    settings = dict(kind='ade', version=GENERATOR_VERSION, num_train=num_train,
                    num_val=num_val, size=size, seed=seed)
    if _prepare(out_dir, settings, overwrite):
        return out_dir
    rng = np.random.default_rng(seed + 1)
    for split, count in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(out_dir, 'images', split), exist_ok=True)
        os.makedirs(osp.join(out_dir, 'annotations', split), exist_ok=True)
        for i in range(count):
            h = int(size * rng.uniform(0.75, 1.0)) // 2 * 2
            w = int(size * rng.uniform(0.75, 1.25)) // 2 * 2
            img, shapes = draw_scene(rng, h, w, min_r=size / 14, max_r=size / 5)
            label = np.full((h, w), ADE_BACKGROUND_LABEL, np.uint8)
            for cls, poly in shapes:
                pts = [np.round(poly).astype(np.int32)]
                cv2.polylines(label, pts, True, 0, thickness=3)  # unlabelled band: ignored
                cv2.fillPoly(label, pts, cls + 2)
            name = f'ADE_demo_{split}_{i:05d}'
            cv2.imwrite(osp.join(out_dir, 'images', split, name + '.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(out_dir, 'annotations', split, name + '.png'), label)
    _finish(out_dir, settings)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kind', choices=['coco', 'ade', 'all'], default='all')
    parser.add_argument('--out', default='data', help='parent folder (default: data)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256, help='longest image side, about')
    parser.add_argument('--num-train', type=int, default=None)
    parser.add_argument('--num-val', type=int, default=None)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace demo data this tool made earlier with other settings')
    args = parser.parse_args(argv)
    jobs = {'coco': (make_coco, 'demo_coco', 300, 50), 'ade': (make_ade, 'demo_ade', 200, 40)}
    for kind in (['coco', 'ade'] if args.kind == 'all' else [args.kind]):
        fn, folder, n_train, n_val = jobs[kind]
        out = osp.join(args.out, folder)
        try:
            fn(out, num_train=args.num_train or n_train, num_val=args.num_val or n_val,
               size=args.size, seed=args.seed, overwrite=args.overwrite)
        except DemoDataError as e:
            raise SystemExit(f'error: {e}')
        print(f'{kind} demo data ready in {out}')


if __name__ == '__main__':
    main()
