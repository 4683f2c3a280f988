"""The Hire module: token mixing of Hire-MLP along height, width and channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from .branch_folding import fold_into_proj, region_branch_mean
from .channels_last import (AddBranches, ChannelsLastGrad, in_channels_position_major,
                            shift_pad_fold)
from .compiled import compiles_static_sizes, hire_compiled
from .fuse import fuse_bn_conv, fuse_conv_bn, is_foldable_norm
from .region_rearrange import (PAD_MODES, crop_and_unshift, fold_regions, shift_and_pad,
                               unfold_regions)
from .traceable import counting_plain_path, hire_graph, is_graph_capture


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
        fast (bool): The fast path (:meth:`_forward_fast`) for maps where it pays
            (:meth:`takes_fast_path`): ``proj`` and the branch weights folded into per-image
            convolution weights, 1x1 convolutions on channels-last memory (much faster in
            oneDNN), shifts and padding as slices instead of index gathers, no un-fold, crop
            or un-shift copies. Same parameters, same results; ``False`` keeps the plain path
            (the test oracle). While the module is recorded
            (``torch.jit.trace``, ``torch.onnx.export``, ``torch.export``,
            ``torch.compile(dynamic=True)``) it runs :meth:`forward_traceable` whatever
            ``fast`` says; ``torch.compile`` with static sizes runs
            :func:`~mmhire.models.layers.compiled.hire_compiled`, the fast path in standard
            operators.
        graph_fold (bool): Whether the recorded graph (:meth:`forward_traceable`) folds
            ``proj`` and the branch weights into per-image weights, as the fast path does.
            That pays on maps of more than ``C (p + 1)`` positions, the fast path's rule, but
            a graph serves every size, so the choice is made here, per module; ``False``
            keeps ``proj`` as a convolution in the graph. Same results either way.
    """

    def __init__(self, embed_dims: int, region_size: int, shift: int = 0,
                 pad_mode: str = 'circular', norm_cfg: dict = dict(type='BN'),
                 fast: bool = True, graph_fold: bool = True):
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise ValueError(f'pad_mode must be one of {PAD_MODES}, got {pad_mode!r}')
        c, p = embed_dims, region_size
        self.embed_dims = embed_dims
        self.region_size = region_size
        self.shift = shift
        self.pad_mode = pad_mode
        self.fast = fast
        self.graph_fold = graph_fold

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

    def _region_mlp(self, x, dim, fc1, norm, fc2):
        """Mix the tokens of each region along ``dim`` (2 = height, 3 = width)."""
        length = x.shape[dim]
        p, shift = self.region_size, self.shift
        x = fold_regions(shift_and_pad(x, dim, p, shift, self.pad_mode), dim, p)
        x = fc2(self.act(norm(fc1(x))))
        return crop_and_unshift(unfold_regions(x, dim, p), dim, length, shift)

    def _region_hidden(self, x, dim, fc1, norm):
        """The first half of a region MLP on the channels-last ``x``: the ``C / 2``-wide hidden
        map of every region, channels-last, ``(B, C / 2, Hp / p, W)`` (``dim=2``) or
        ``(B, C / 2, H, Wp / p)`` (``dim=3``)."""
        p = self.region_size
        folded = shift_pad_fold(x, dim, p, self.shift, self.pad_mode)
        hidden = F.conv2d(folded, in_channels_position_major(fc1.weight, p), fc1.bias)
        return ChannelsLastGrad.apply(self.act(norm(hidden)))

    def _branch_weights(self, x, hidden_h, hidden_w):
        """The softmax weights ``a`` of the three branches, ``(B, C, 3)``, from the branches'
        means: read off the hidden maps (:func:`region_branch_mean`) and ``x``'s mean, with no
        full-size branch output."""
        b, c, height, width = x.shape
        p = self.region_size
        mlp_h2, mlp_w2, mlp_c = self.mlp_h2, self.mlp_w2, self.mlp_c
        mean = (region_branch_mean(hidden_h, mlp_h2.weight.reshape(c, p, -1),
                                   mlp_h2.bias.reshape(c, p), height, dim=2)
                + region_branch_mean(hidden_w, mlp_w2.weight.reshape(c, p, -1),
                                     mlp_w2.bias.reshape(c, p), width, dim=3)
                # sum / n, not mean: mean's backward materialises a full-size gradient
                + F.linear(x.sum(dim=(2, 3)) / (height * width), mlp_c.weight.reshape(c, c),
                           mlp_c.bias))
        return self.reweight(mean.reshape(b, c, 1, 1)).reshape(b, c, 3).softmax(dim=2)

    def _forward_fast(self, x):
        """The plain path's result, with ``proj`` and the branch weights folded away.

        Steps (see :mod:`~mmhire.models.layers.branch_folding` for the algebra):

        1. the hidden maps of both region MLPs (shift, pad and fold in one copy each);
        2. the branch weights ``a`` from the branches' means, read off the hidden maps;
        3. per image, since ``a`` differs from image to image: the three last convolutions with
           ``proj . diag(a_k)`` folded into their weights, the channel branch's result taking
           the height and width branches' results added in through strided views
           (:class:`~mmhire.models.layers.channels_last.AddBranches`: no un-fold, crop or
           un-shift copies).

        This saves ``proj`` (a ``C x C`` convolution over the map) and the weighted sum's
        passes, and runs every convolution on channels-last memory, where oneDNN is fastest.
        :meth:`takes_fast_path` says when it pays.
        """
        x = ChannelsLastGrad.apply(x.contiguous(memory_format=torch.channels_last))
        hidden_h = self._region_hidden(x, 2, self.mlp_h1, self.mlp_h1_norm)
        hidden_w = self._region_hidden(x, 3, self.mlp_w1, self.mlp_w1_norm)
        branch_weights = self._branch_weights(x, hidden_h, hidden_w)
        # (split, not indexing: the backward of x[i:i + 1] zero-fills a batch-sized gradient
        # per image)
        images = (zip(x.split(1), hidden_h.split(1), hidden_w.split(1))
                  if x.shape[0] > 1 else [(x, hidden_h, hidden_w)])
        outs = []
        for a, (x_i, hidden_h_i, hidden_w_i) in zip(branch_weights, images):
            folded = fold_into_proj(self.proj, a, self.mlp_h2, self.mlp_w2, self.mlp_c)
            out_h = F.conv2d(hidden_h_i, folded.height, folded.height_bias)
            out_w = F.conv2d(hidden_w_i, folded.width, folded.width_bias)
            out_c = F.conv2d(x_i, folded.channel, folded.channel_bias)
            outs.append(AddBranches.apply(out_c.permute(0, 2, 3, 1), out_h, out_w,
                                          self.region_size, self.shift))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        return out.permute(0, 3, 1, 2)

    def takes_fast_path(self, height: int, width: int) -> bool:
        """Whether an eager forward on a ``height x width`` map runs :meth:`_forward_fast`.

        The fast path's extra work grows with the weights (folding them, about ``C^3 (p + 1)``
        multiply-adds per image), its savings with the map: below ``C (p + 1)`` positions it
        loses to the plain path (measured: HireMLP-S at 224x224), so small maps take the plain
        path.
        """
        return self.fast and height * width > self.embed_dims * (self.region_size + 1)

    def forward(self, x):
        if is_graph_capture():
            if counting_plain_path():
                return self._forward_plain(x)
            if compiles_static_sizes():
                return hire_compiled(self, x)
            return self.forward_traceable(x)
        if self.takes_fast_path(x.shape[2], x.shape[3]):
            return self._forward_fast(x)
        return self._forward_plain(x)

    def forward_traceable(self, x):
        """The fast path's arithmetic as one graph of standard operators, every size
        symbolic (:func:`~mmhire.models.layers.traceable.hire_graph`): no Python decision on a
        size, nothing in place, no custom operator, so one recorded graph (ONNX,
        ``torch.export``, ``torch.compile``) serves every input size. :meth:`forward` takes it
        while the module is recorded."""
        return hire_graph(self, x)

    def _forward_plain(self, x):
        """The released formulation, step by step: the test oracle."""
        b, c = x.shape[:2]
        h = self._region_mlp(x, 2, self.mlp_h1, self.mlp_h1_norm, self.mlp_h2)
        w = self._region_mlp(x, 3, self.mlp_w1, self.mlp_w1_norm, self.mlp_w2)
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
                f'shift={self.shift}, pad_mode={self.pad_mode!r}, fast={self.fast}, '
                f'graph_fold={self.graph_fold}')
