"""The Hire module: token mixing of Hire-MLP along height, width and channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .fuse import fuse_bn_conv, fuse_conv_bn, is_foldable_norm
from .channels_last import (AddBranches, ChannelsLastGrad, in_channels_position_major,
                            region_branch_mean, shift_pad_fold)
from .region_rearrange import (PAD_MODES, crop_and_unshift, fold_regions, shift_and_pad,
                               unfold_regions)
from .traceable import is_graph_capture, shift_pad_fold as traceable_shift_pad_fold
from .traceable import unfold_crop_unshift


class ConvMlp(nn.Module):
    """Two 1x1 convolutions with a GELU between them (``fc1`` -> GELU -> ``fc2``)."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, hidden_channels, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_channels, out_channels, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class HireModule(nn.Module):
    """Hierarchical rearrangement MLP (the token mixer of a Hire-MLP block).

    Three branches see the same input: a height branch and a width branch that mix the tokens of
    each region of ``region_size`` positions (after a cross-region ``shift``), and a channel branch.
    A split-attention style ``reweight`` MLP fuses them per channel, and ``proj`` mixes the result.
    Parameter names match the released checkpoints (``mlp_h1``, ``mlp_h1_norm``, ...).

    Args:
        embed_dims (int): Channels C of the input. Must be even (the region MLPs are C/2 wide).
        region_size (int): Tokens per region along each axis.
        shift (int): Cross-region shift of this block, in tokens; 0 disables it.
        pad_mode (str): How an axis is padded to a multiple of ``region_size``:
            ``'circular'`` (released model), ``'constant'`` (zeros) or ``'replicate'``.
        norm_cfg (dict): Norm of the region MLPs. Defaults to ``dict(type='BN')``.
        fast (bool): The fast path (:meth:`_forward_fast`): ``proj`` and the branch weights
            folded into per-image convolution weights, 1x1 convolutions on channels-last
            memory (much faster in oneDNN), shifts and padding as slices instead of index
            gathers, no un-fold, crop or un-shift copies. Same parameters, same results;
            ``False`` keeps the plain path (the test oracle). While the module is recorded
            (``torch.jit.trace``, ``torch.onnx.export``, ``torch.export``, ``torch.compile``)
            it runs :meth:`forward_traceable` whatever ``fast`` says.
    """

    def __init__(self, embed_dims: int, region_size: int, shift: int = 0,
                 pad_mode: str = 'circular', norm_cfg: dict = dict(type='BN'),
                 fast: bool = True):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f'pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        c, p = embed_dims, region_size
        self.embed_dims = embed_dims
        self.region_size = region_size
        self.shift = shift
        self.pad_mode = pad_mode
        self.fast = fast
        # The fast path's extra work grows with the weights (permuting and folding them, about
        # C^3 (p + 1) multiply-adds), its savings with the map: below C (p + 1) positions it
        # loses to the plain path (measured: HireMLP-S at 224x224), so small maps take the
        # plain path. Tests set ``fast_min_positions = 0`` to force the fast path.
        self.fast_min_positions = embed_dims * (region_size + 1)
        self.fold_proj = True  # tests set False to check the fast path's unfolded variant

        self.mlp_h1 = nn.Conv2d(c * p, c // 2, 1, bias=False)
        self.mlp_h1_norm = build_norm_layer(norm_cfg, c // 2)[1]
        self.mlp_h2 = nn.Conv2d(c // 2, c * p, 1)
        self.mlp_w1 = nn.Conv2d(c * p, c // 2, 1, bias=False)
        self.mlp_w1_norm = build_norm_layer(norm_cfg, c // 2)[1]
        self.mlp_w2 = nn.Conv2d(c // 2, c * p, 1)
        self.mlp_c = nn.Conv2d(c, c, 1)
        self.act = nn.ReLU()
        self.reweight = ConvMlp(c, c // 4, c * 3)
        self.proj = nn.Conv2d(c, c, 1)

    def _region_mlp(self, x, dim, fc1, norm, fc2, traceable):
        """Mix the tokens of each region along ``dim`` (2 = height, 3 = width)."""
        length = x.shape[dim]
        p, shift = self.region_size, self.shift
        if traceable:
            x = traceable_shift_pad_fold(x, dim, p, shift, self.pad_mode)
        else:
            x = fold_regions(shift_and_pad(x, dim, p, shift, self.pad_mode), dim, p)
        x = fc2(self.act(norm(fc1(x))))
        if traceable:
            return unfold_crop_unshift(x, dim, length, p, shift)
        return crop_and_unshift(unfold_regions(x, dim, p), dim, length, shift)

    def _region_hidden_nhwc(self, x, dim, fc1, norm):
        """First half of the region MLP on channels-last memory: the ``C / 2``-wide hidden map
        of every region, ``(B, C / 2, Hp / p, W)`` or ``(B, C / 2, H, Wp / p)``."""
        p = self.region_size
        folded = shift_pad_fold(x, dim, p, self.shift, self.pad_mode)
        z = F.conv2d(folded, in_channels_position_major(fc1.weight, p), fc1.bias)
        return ChannelsLastGrad.apply(self.act(norm(z)))

    def _forward_fast(self, x):
        """Same result as the plain path, with ``proj`` and the branch weights folded away.

        ``proj`` is linear and the branch weights ``a`` are per channel, so
        ``proj(a0 * h + a1 * w + a2 * ch)`` equals the sum of three maps computed by
        convolutions whose weights absorb them: ``proj . diag(a0) . mlp_h2`` on the height
        branch's hidden map, likewise for the width branch, and ``proj . diag(a2) . mlp_c`` on
        ``x``. ``a`` comes from the branches' means, which are linear in the hidden maps' sums
        and in ``x``'s mean, so they are known before any full-size branch output exists. That
        removes ``proj`` (a ``C x C`` convolution over the map) and the weighted sum's passes.
        The weights depend on ``a``, so each image of the batch gets its own. (With
        ``fold_proj = False`` only the ``diag(a_k)`` are folded and ``proj`` stays a
        convolution.) Maps of at most ``fast_min_positions`` positions take the plain path,
        where this weight-side work would cost more than it saves. Everything runs
        on channels-last memory, and the branch outputs are added into the result through
        strided views (:class:`~mmhire.models.layers.channels_last.AddBranches`).
        """
        b, c, height, width = x.shape
        x = ChannelsLastGrad.apply(x.contiguous(memory_format=torch.channels_last))
        p, shift = self.region_size, self.shift
        zh = self._region_hidden_nhwc(x, 2, self.mlp_h1, self.mlp_h1_norm)
        zw = self._region_hidden_nhwc(x, 3, self.mlp_w1, self.mlp_w1_norm)

        wh = self.mlp_h2.weight.reshape(c, p, -1)  # row c * p + i: token i of channel c
        ww = self.mlp_w2.weight.reshape(c, p, -1)
        bh = self.mlp_h2.bias.reshape(c, p)
        bw = self.mlp_w2.bias.reshape(c, p)
        wc = self.mlp_c.weight.reshape(c, c)
        mean = (region_branch_mean(zh, wh, bh, height, dim=2)
                + region_branch_mean(zw, ww, bw, width, dim=3)
                # sum / n, not mean: mean's backward materialises a full-size gradient
                + F.linear(x.sum(dim=(2, 3)) / (height * width), wc, self.mlp_c.bias))
        a = self.reweight(mean.reshape(b, c, 1, 1)).reshape(b, c, 3).softmax(dim=2)

        proj = self.proj.weight.reshape(c, c)
        # one image at a time: the folded weights depend on the image through a. (split, not
        # indexing: the backward of x[i:i + 1] zero-fills a batch-sized gradient per image)
        images = zip(x.split(1), zh.split(1), zw.split(1)) if b > 1 else [(x, zh, zw)]
        outs = []
        for i, (x_i, zh_i, zw_i) in enumerate(images):
            if self.fold_proj:
                pa = proj * a[i].t().unsqueeze(1)  # (3, C, C): proj . diag(a_k)
                wh_i = torch.einsum('oc,cik->iok', pa[0], wh)
                ww_i = torch.einsum('oc,cik->iok', pa[1], ww)
                bh_i = torch.einsum('oc,ci->io', pa[0], bh)
                bw_i = torch.einsum('oc,ci->io', pa[1], bw)
                wc_i = pa[2] @ wc
                bc_i = pa[2] @ self.mlp_c.bias + self.proj.bias
            else:  # only diag(a_k): scale the output channels, proj stays a convolution
                ak = a[i].t()  # (3, C)
                wh_i = (wh * ak[0].reshape(c, 1, 1)).transpose(0, 1)
                ww_i = (ww * ak[1].reshape(c, 1, 1)).transpose(0, 1)
                bh_i = (bh * ak[0].reshape(c, 1)).t()
                bw_i = (bw * ak[1].reshape(c, 1)).t()
                wc_i = wc * ak[2].reshape(c, 1)
                bc_i = self.mlp_c.bias * ak[2]
            # position-major outputs: row i * C + o is token i of channel o
            yh = F.conv2d(zh_i, wh_i.reshape(p * c, -1, 1, 1), bh_i.reshape(p * c))
            yw = F.conv2d(zw_i, ww_i.reshape(p * c, -1, 1, 1), bw_i.reshape(p * c))
            ch = F.conv2d(x_i, wc_i.reshape(c, c, 1, 1), bc_i).permute(0, 2, 3, 1)
            outs.append(AddBranches.apply(ch, yh, yw, p, shift))
        out = (outs[0] if b == 1 else torch.cat(outs)).permute(0, 3, 1, 2)
        return out if self.fold_proj else self.proj(out)

    def forward(self, x):
        if is_graph_capture():
            return self.forward_traceable(x)
        if self.fast and x.shape[2] * x.shape[3] > self.fast_min_positions:
            return self._forward_fast(x)
        return self._forward_plain(x, traceable=False)

    def forward_traceable(self, x):
        """The plain path with every size symbolic (see :mod:`~mmhire.models.layers.traceable`):
        no Python decision on a size, nothing in place, no custom autograd function, so one
        recorded graph (ONNX, ``torch.export``, ``torch.compile``) serves every input size.
        :meth:`forward` takes it while the module is recorded."""
        return self._forward_plain(x, traceable=True)

    def _forward_plain(self, x, traceable):
        b, c = x.shape[:2]
        h = self._region_mlp(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2, traceable)
        w = self._region_mlp(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2, traceable)
        ch = self.mlp_c(x)

        # Branch weights: reweight's 3C outputs read as (C, 3), softmax over the 3 branches.
        a = (h + w + ch).mean(dim=(2, 3), keepdim=True)
        a = self.reweight(a).reshape(b, c, 3).softmax(dim=2)
        a = a.permute(2, 0, 1).unsqueeze(-1).unsqueeze(-1)  # (3, B, C, 1, 1)
        x = h * a[0] + w * a[1] + ch * a[2]
        return self.proj(x)

    @torch.no_grad()
    def fuse(self, pre_norm=None) -> bool:
        """Fold the region MLPs' norms (and ``pre_norm``, the norm applied to this module's
        input) into the 1x1 convolutions, for inference.

        ``pre_norm`` is folded only when the padding copies input values (``'circular'``,
        ``'replicate'``): per-channel affine maps commute with copying, but not with zero
        padding. Returns whether ``pre_norm`` was folded, so the caller can drop it.
        """
        for fc1, norm in (('mlp_h1', 'mlp_h1_norm'), ('mlp_w1', 'mlp_w1_norm')):
            if is_foldable_norm(getattr(self, norm)):
                setattr(self, fc1, fuse_conv_bn(getattr(self, fc1), getattr(self, norm)))
                setattr(self, norm, nn.Identity())
        if pre_norm is None or not is_foldable_norm(pre_norm) or self.pad_mode == 'constant':
            return False
        p = self.region_size
        self.mlp_h1 = fuse_bn_conv(pre_norm, self.mlp_h1, repeat=p)
        self.mlp_w1 = fuse_bn_conv(pre_norm, self.mlp_w1, repeat=p)
        self.mlp_c = fuse_bn_conv(pre_norm, self.mlp_c)
        return True

    def extra_repr(self):
        return (f'embed_dims={self.embed_dims}, region_size={self.region_size}, '
                f'shift={self.shift}, pad_mode={self.pad_mode!r}, fast={self.fast}')
