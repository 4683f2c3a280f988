"""The compiled mmcv ops the detectors need load and compute on CPU."""
import torch


def test_nms():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dets.shape == (2, 5)


def test_roi_align():
    from mmcv.ops import RoIAlign
    feat = torch.arange(16.).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)(feat, rois)
    assert out.shape == (1, 1, 2, 2)
    # bin centres at (1, 1), (1, 3), (3, 1), (3, 3): bilinear values of the ramp
    torch.testing.assert_close(out.flatten(), torch.tensor([5., 7., 13., 15.]))
