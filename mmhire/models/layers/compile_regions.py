"""Hire blocks as nested compile regions: ``torch.compile`` traces and lowers each distinct
block once and stamps the code out for the blocks that repeat it (HireMLP-S's 20 blocks are 9
distinct ones: same stage, same shift), instead of tracing, lowering and generating code for
every block. Only for ``torch.compile``: ``torch.export`` keeps no regions, and the eager
paths never see them.

A region may not change anything outside itself, and two things in a block do:

- **BatchNorm's running statistics** (training). In a region the block's BatchNorms normalise
  with the batch statistics (:func:`batch_norm_with_stats`) and return them; the running
  statistics are updated after the region, as ``nn.BatchNorm2d`` does.
- **Stochastic depth's random draws** (training). The two drop masks are drawn before the
  region, in the order the eager block draws them, and enter it as inputs. In eval stochastic
  depth is the identity and stays out of the region, so the per-block rate is no guard.

Blocks whose norms are not plain ``nn.BatchNorm2d`` layers with running statistics and a
momentum (GroupNorm, SyncBN, ``momentum=None``'s cumulative average), and blocks mixing train
and eval modules (``norm_eval=True``), are traced block by block as before.
"""
import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath


def _compiled_once(fn):
    """``fn`` as a nested compile region, or None on a torch without regions that take
    ``max_reuse_entries``."""
    region = getattr(torch.compiler, 'nested_compile_region', None)
    if region is None:
        return None
    try:
        # one entry per distinct block of one model (and per input layout): the default, 8,
        # is too few for HireMLP-S, and running out is an error, not a fallback
        return region(fn, max_reuse_entries=1024)
    except TypeError:
        return None


def _compiling_regions() -> bool:
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def block_norms(block):
    """The block's four norms, in the order the block applies them (and the training region
    returns their statistics): ``norm1``, the Hire module's height and width norms, ``norm2``."""
    return block.norm1, block.attn.mlp_h1_norm, block.attn.mlp_w1_norm, block.norm2


def _has_region_norms(block) -> bool:
    return all(type(norm) is nn.BatchNorm2d and norm.track_running_stats and norm.affine
               and norm.momentum is not None for norm in block_norms(block))


def compiles_eval_block_once(block) -> bool:
    """Whether ``block`` runs as an eval region: ``torch.compile`` (not ``torch.export``) is
    recording it and every submodule is in eval mode. The first call of the compiled
    HireMLP-S at 1x3x800x1216 took 57-63 s instead of 69-70 s (2-core Xeon, cold caches)."""
    return (_eval_region is not None and _compiling_regions()
            and not any(m.training for m in block.modules()))


def compiles_training_block_once(block) -> bool:
    """Whether ``block`` runs as a training region: ``torch.compile`` is recording it, every
    submodule is in training mode and its norms are plain BatchNorms (see the module
    docstring)."""
    return (_training_region is not None and _compiling_regions()
            and all(m.training for m in block.modules()) and _has_region_norms(block))


def _eval_block(block, x):
    x = x + block.attn(block.norm1(x))
    return x + block.mlp(block.norm2(x))


def batch_norm_with_stats(norm: nn.BatchNorm2d, x: torch.Tensor):
    """Training-mode ``norm(x)`` without touching ``norm``'s buffers: ``(out, mean, var)``,
    the batch mean and the unbiased batch variance per channel (what the running statistics
    move towards), both detached. Statistics in float32 whatever ``x``'s dtype, as
    ``nn.BatchNorm2d``'s kernels keep them; ``out`` has ``x``'s dtype."""
    count = x.numel() // x.shape[1]
    if count == 1:  # nn.BatchNorm2d's own check, with its message
        raise ValueError('Expected more than 1 value per channel when training, got input '
                         f'size {tuple(x.shape)}')
    x32 = x.float()
    var, mean = torch.var_mean(x32, dim=(0, 2, 3), correction=0)
    scale = torch.rsqrt(var + norm.eps) * norm.weight
    out = (x32 - mean.reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1) + norm.bias.reshape(
        1, -1, 1, 1)
    return out.to(x.dtype), mean.detach(), (var * (count / (count - 1))).detach()


def _training_block(block, x, keep_attn, keep_mlp):
    """A training block as a function of its inputs alone: its output, then the batch mean
    and variance of each of :func:`block_norms`. ``keep_attn`` / ``keep_mlp``: stochastic
    depth's per-image scales (0 or ``1 / keep_prob``), or None without stochastic depth."""
    stats = []

    def normalise(norm, t):
        out, mean, var = batch_norm_with_stats(norm, t)
        stats.extend((mean, var))
        return out

    x_attn = normalise(block.norm1, x)
    branch = block.attn.forward_recorded(
        x_attn, norms=(lambda t: normalise(block.attn.mlp_h1_norm, t),
                       lambda t: normalise(block.attn.mlp_w1_norm, t)))
    x = x + (branch if keep_attn is None else branch * keep_attn)
    branch = block.mlp(normalise(block.norm2, x))
    x = x + (branch if keep_mlp is None else branch * keep_mlp)
    return (x, *stats)


_eval_region = _compiled_once(_eval_block)
_training_region = _compiled_once(_training_block)


def run_eval_block_once(block, x):
    """``block(x)`` in eval mode, as a region (:func:`compiles_eval_block_once`)."""
    return _eval_region(block, x)


def _drop_scale(drop_path, x):
    """Stochastic depth's per-image scale, drawn as mmcv's ``DropPath`` draws it."""
    if not isinstance(drop_path, DropPath) or drop_path.drop_prob == 0:
        return None
    keep = 1 - drop_path.drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.dim() - 1)
    return (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor() / keep


def run_training_block_once(block, x):
    """``block(x)`` in training mode, as a region (:func:`compiles_training_block_once`), then
    the running statistics' update of each BatchNorm, as ``nn.BatchNorm2d`` makes it."""
    # (one DropPath module serves both branches, as in the eager block)
    keep_attn = _drop_scale(block.drop_path, x)
    keep_mlp = _drop_scale(block.drop_path, x)
    x, *stats = _training_region(block, x, keep_attn, keep_mlp)
    with torch.no_grad():
        for i, norm in enumerate(block_norms(block)):
            mean, var = stats[2 * i], stats[2 * i + 1]
            norm.num_batches_tracked.add_(1)
            norm.running_mean.mul_(1 - norm.momentum).add_(mean, alpha=norm.momentum)
            norm.running_var.mul_(1 - norm.momentum).add_(var, alpha=norm.momentum)
    return x
