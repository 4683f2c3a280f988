"""The fast path's arithmetic (branch_folding.py) against the maps it stands for."""
import torch

import torch.nn as nn
import torch.nn.functional as F

from mmhire.models.layers.branch_folding import fold_into_proj, region_branch_mean


def test_region_branch_mean_matches_the_output_mean():
    torch.manual_seed(0)
    c, k, p = 3, 4, 3
    for dim, length in ((2, 7), (3, 5), (2, 9)):
        regions = -(-length // p)
        shape = (2, k, regions, 4) if dim == 2 else (2, k, 4, regions)
        hidden = torch.randn(*shape, dtype=torch.float64)
        weight = torch.randn(c, p, k, dtype=torch.float64)
        bias = torch.randn(c, p, dtype=torch.float64)
        # the branch output, un-folded to channel-major, cropped to the data positions
        out = torch.einsum('cik,bk...->bci...', weight, hidden)
        out = out + bias.reshape(1, c, p, 1, 1)
        if dim == 2:
            out = out.permute(0, 1, 3, 2, 4).reshape(2, c, regions * p, 4)[:, :, :length]
        else:
            out = out.permute(0, 1, 3, 4, 2).reshape(2, c, 4, regions * p)[:, :, :, :length]
        torch.testing.assert_close(region_branch_mean(hidden, weight, bias, length, dim),
                                   out.mean(dim=(2, 3)))


def test_folded_weights_equal_proj_after_the_weighted_branches():
    torch.manual_seed(0)
    c, k, p = 6, 3, 3
    proj, mlp_c = nn.Conv2d(c, c, 1).double(), nn.Conv2d(c, c, 1).double()
    mlp_h2, mlp_w2 = nn.Conv2d(k, c * p, 1).double(), nn.Conv2d(k, c * p, 1).double()
    a = torch.rand(c, 3, dtype=torch.float64)
    folded = fold_into_proj(proj, a, mlp_h2, mlp_w2, mlp_c)
    hidden = torch.randn(2, k, 4, 5, dtype=torch.float64)
    x = torch.randn(2, c, 4, 5, dtype=torch.float64)

    def position_major(y):  # channel c * p + i -> i * C + c
        return y.reshape(2, c, p, 4, 5).transpose(1, 2).reshape(2, p * c, 4, 5)

    for conv, weight, bias, branch in ((mlp_h2, folded.height, folded.height_bias, 0),
                                       (mlp_w2, folded.width, folded.width_bias, 1)):
        tokens = conv(hidden).reshape(2, c, p, 4, 5) * a[:, branch].reshape(1, c, 1, 1, 1)
        expected = F.conv2d(tokens.transpose(1, 2).reshape(2 * p, c, 4, 5),
                            proj.weight, None).reshape(2, p, c, 4, 5).transpose(1, 2)
        expected = position_major(expected.reshape(2, c * p, 4, 5))
        # proj's bias goes to the channel branch only
        torch.testing.assert_close(F.conv2d(hidden, weight, bias), expected)
    torch.testing.assert_close(F.conv2d(x, folded.channel, folded.channel_bias),
                               proj(mlp_c(x) * a[:, 2].reshape(1, c, 1, 1)))
