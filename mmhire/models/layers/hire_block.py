"""A Hire-MLP block and the convolutional stem / downsampling layers around the stages."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath

from .branch_folding import hire_fast_nhwc
from .capture import counting_plain_path, is_exporting
from .fuse import bn_scale_shift, fuse_bn_conv, fuse_conv_bn, is_foldable_norm
from .hire_module import ConvMlp, HireModule


class HireBlock(nn.Module):
    """``x + drop_path(attn(norm1(x)))``, then ``x + drop_path(mlp(norm2(x)))``.

    Args:
        embed_dims (int): Channels of the block.
        mlp_ratio (float): Hidden width of the channel MLP relative to ``embed_dims``.
        region_size (int): Tokens per region of the Hire module.
        shift (int): Cross-region shift of the Hire module.
        drop_path (float): Stochastic depth rate of both residual branches.
        pad_mode (str): Padding of the Hire module, see :class:`HireModule`.
        norm_cfg (dict): Norm layers of the block.
        fast (bool): Fast path of the Hire module (same results), see :class:`HireModule`.
        graph_fold (bool): Weights folded in the recorded graph, see :class:`HireModule`.
    """

    def __init__(self, embed_dims, mlp_ratio=4., region_size=2, shift=0, drop_path=0.,
                 pad_mode='circular', norm_cfg=dict(type='BN'), fast=True, graph_fold=True):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = HireModule(embed_dims, region_size, shift, pad_mode, norm_cfg, fast,
                               graph_fold)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.mlp = ConvMlp(embed_dims, int(embed_dims * mlp_ratio), embed_dims)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x):
        if compiles_blocks_once(self):
            return _eval_block_compiled_once(self, x)
        if exports_channels_last(self):
            # the block on (B, H, W, C): the permutes of consecutive blocks cancel in the
            # file, so a stage's maps change layout once at each end, not in every module
            return self._forward_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _forward_nhwc(self, x):
        """The block in eval mode on and to ``(B, H, W, C)``: the norms as per-channel affine
        maps, the channel MLP as products over the last axis, the fast Hire module."""
        x = x + hire_fast_nhwc(self.attn, _norm_nhwc(self.norm1, x))
        return x + self.mlp.forward_nhwc(_norm_nhwc(self.norm2, x))

    def fuse(self):
        """Fold the block's BatchNorms into its 1x1 convolutions (inference only)."""
        if self.attn.fuse(pre_norm=self.norm1):
            self.norm1 = nn.Identity()
        if is_foldable_norm(self.norm2):
            self.mlp.fc1 = fuse_bn_conv(self.norm2, self.mlp.fc1)
            self.norm2 = nn.Identity()


def exports_channels_last(block) -> bool:
    """Whether ``block`` runs on ``(B, H, W, C)``: while an export (ONNX, ``torch.export``)
    records the fast path in eval mode. In the NCHW graph every Hire module's entry and exit
    would be a full-map ``Transpose``; eager runs and ``torch.compile`` take them as views."""
    return (is_exporting() and block.attn.fast and not counting_plain_path()
            and not any(m.training for m in block.modules()))


def _norm_nhwc(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm`` (eval mode) applied to the channels of ``(B, H, W, C)``: a BatchNorm as its
    per-channel affine map, anything else on the NCHW view."""
    if isinstance(norm, nn.Identity):
        return x
    if is_foldable_norm(norm):
        scale, shift = bn_scale_shift(norm, x.dtype)  # (no float64 in a recorded graph)
        return x * scale + shift
    return norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _eval_block(block, x):
    """A block in eval mode. Stochastic depth is the identity there, and leaving it out keeps
    its per-block rate (a guard) out of the region that blocks share."""
    x = x + block.attn(block.norm1(x))
    return x + block.mlp(block.norm2(x))


def _compiled_once(fn):
    """``fn`` as a nested compile region: ``torch.compile`` traces and compiles it once per
    distinct block (HireMLP-S's 20 blocks are 9 distinct ones) and stamps the code out
    for the others, instead of tracing and lowering every block. None on a torch without
    regions that take ``max_reuse_entries``."""
    region = getattr(torch.compiler, 'nested_compile_region', None)
    if region is None:
        return None
    try:
        # one entry per distinct block of one model (and per input layout): the default, 8,
        # is too few for HireMLP-S, and running out is an error, not a fallback
        return region(fn, max_reuse_entries=1024)
    except TypeError:
        return None


_eval_block_compiled_once = _compiled_once(_eval_block)


def compiles_blocks_once(block) -> bool:
    """Whether ``torch.compile`` (not ``torch.export``, whose graphs keep no regions) is
    recording ``block`` in eval mode. Only there: a region may not update BatchNorm's running
    statistics, which training does. The first call of the compiled HireMLP-S at
    1x3x800x1216 took 57-63 s instead of 69-70 s (2-core Xeon, cold caches): tracing and
    lowering once per distinct block; the C++ kernels were already shared."""
    return (_eval_block_compiled_once is not None and torch.compiler.is_compiling()
            and not torch.compiler.is_exporting()
            and not any(m.training for m in block.modules()))


def pad_to_min_size(x: torch.Tensor, min_size: int) -> torch.Tensor:
    """Zero-pad the bottom / right of ``(B, C, H, W)`` up to ``min_size`` on each side.

    In eager runs the sizes are ints and nothing is copied unless a side is short. Under
    ``torch.jit.trace`` the sizes are 0-d tensors and the pad amounts become part of the
    graph, so a small input recorded at a large size still gets its pad. Under dynamo the
    sizes are ``SymInt``s and the comparison is a guard (``torch.compile`` recompiles for an
    input on the other side of it; ``torch.export`` takes the recorded side): a ``max`` there
    would follow every later size expression through the network and slow symbolic shape
    reasoning down by orders of magnitude.
    """
    h, w = x.shape[-2:]
    if isinstance(h, torch.Tensor):
        pad_h, pad_w = (torch.clamp(min_size - s, min=0) for s in (h, w))
        return F.pad(x, (0, pad_w, 0, pad_h))
    if h < min_size or w < min_size:
        x = F.pad(x, (0, max(min_size - w, 0), 0, max(min_size - h, 0)))
    return x


class ConvNormAct(nn.Module):
    """``proj`` convolution, ``norm``, ReLU: the stem (``patch_embed``) and the downsampling layers.

    ``min_input`` is the smallest side the convolution accepts; smaller inputs are zero padded at
    the bottom / right up to it, which only extends the convolution's own zero padding. This keeps
    the released model's output wherever it runs and gives a 1x1 output for tiny inputs.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding,
                 norm_cfg=dict(type='BN')):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = nn.ReLU()
        self.min_input = max(kernel_size - 2 * padding, 1)

    def fuse(self):
        """Fold ``norm`` into ``proj`` (inference only)."""
        if is_foldable_norm(self.norm):
            self.proj = fuse_conv_bn(self.proj, self.norm)
            self.norm = nn.Identity()

    def forward(self, x):
        x = pad_to_min_size(x, self.min_input)  # eager, traced and compiled alike
        return self.act(self.norm(self.proj(x)))
