"""A plain Hire-MLP, the released model as the paper and the authors' release describe it,
for tests only.

It mirrors the released classifier's module names (``patch_embed``, ``network``, ``norm``,
``head``), so its state dict is a stand-in for the released checkpoints, and it computes what the
released model computes, the naive way: stem conv 7x7 / 4 (padding 2) + BN + ReLU; four stages
of blocks ``x + hire(bn(x))``, ``x + mlp(bn(x))``, separated by conv 3x3 / 2 (padding 1) + BN +
ReLU; in each Hire module, along the height and along the width, ``torch.roll`` by the block's
shift, circular ``F.pad`` up to a multiple of the region size, the region's tokens folded into
the channels (einops, channel-major ``(c p)``), the region MLP, and the same undone; a channel
branch; the three fused by a softmax over ``reweight(mean(h + w + c))`` read as ``(c, 3)``; then
``proj``. It is deliberately naive: it is the oracle the package's backbone is compared against.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

ARCHS = {
    'tiny': ([2, 2, 4, 2], [64, 128, 320, 512]),
    'small': ([3, 4, 10, 3], [64, 128, 320, 512]),
    'base': ([4, 6, 24, 3], [64, 128, 320, 512]),
    'large': ([4, 6, 24, 3], [96, 192, 384, 768]),
}


class RefMlp(nn.Module):
    def __init__(self, cin, hidden, cout):
        super().__init__()
        self.fc1 = nn.Conv2d(cin, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, cout, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefHire(nn.Module):
    def __init__(self, dim, p, shift):
        super().__init__()
        self.p, self.s = p, shift
        self.mlp_h1 = nn.Conv2d(dim * p, dim // 2, 1, bias=False)
        self.mlp_h1_norm = nn.BatchNorm2d(dim // 2)
        self.mlp_h2 = nn.Conv2d(dim // 2, dim * p, 1)
        self.mlp_w1 = nn.Conv2d(dim * p, dim // 2, 1, bias=False)
        self.mlp_w1_norm = nn.BatchNorm2d(dim // 2)
        self.mlp_w2 = nn.Conv2d(dim // 2, dim * p, 1)
        self.mlp_c = nn.Conv2d(dim, dim, 1)
        self.act = nn.ReLU()
        self.reweight = RefMlp(dim, dim // 4, dim * 3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        p, s = self.p, self.s
        # height branch
        h = torch.roll(x, s, dims=2) if s > 0 else x
        pad_h = (p - H % p) % p
        h = F.pad(h, (0, 0, 0, pad_h), mode='circular') if pad_h else h
        h = rearrange(h, 'b c (hh p) w -> b (c p) hh w', p=p)
        h = self.mlp_h2(self.act(self.mlp_h1_norm(self.mlp_h1(h))))
        h = rearrange(h, 'b (c p) hh w -> b c (hh p) w', p=p)[:, :, :H]
        h = torch.roll(h, -s, dims=2) if s > 0 else h
        # width branch
        w = torch.roll(x, s, dims=3) if s > 0 else x
        pad_w = (p - W % p) % p
        w = F.pad(w, (0, pad_w, 0, 0), mode='circular') if pad_w else w
        w = rearrange(w, 'b c h (ww p) -> b (c p) h ww', p=p)
        w = self.mlp_w2(self.act(self.mlp_w1_norm(self.mlp_w1(w))))
        w = rearrange(w, 'b (c p) h ww -> b c h (ww p)', p=p)[:, :, :, :W]
        w = torch.roll(w, -s, dims=3) if s > 0 else w
        # channel branch and fusion
        c = self.mlp_c(x)
        a = (h + w + c).mean(dim=(2, 3), keepdim=True)
        a = rearrange(self.reweight(a), 'b (c k) 1 1 -> k b c 1 1', k=3).softmax(dim=0)
        return self.proj(h * a[0] + w * a[1] + c * a[2])


class RefBlock(nn.Module):
    def __init__(self, dim, p, shift, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = RefHire(dim, p, shift)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = RefMlp(dim, dim * mlp_ratio, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefConvBN(nn.Module):
    def __init__(self, cin, cout, k, s, pad):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, s, pad)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.proj(x)))


class RefHireMLP(nn.Module):
    """The released classifier: ``forward_stages`` returns the outputs of network.0/2/4/6."""

    def __init__(self, depths, dims, region_sizes=(4, 3, 3, 2), periods=(2, 2, 3, 2),
                 steps=(2, 2, 1, 1), mlp_ratios=(4, 4, 4, 4), num_classes=1000):
        super().__init__()
        self.patch_embed = RefConvBN(3, dims[0], 7, 4, 2)
        layers = []
        for i in range(4):
            if i:
                layers.append(RefConvBN(dims[i - 1], dims[i], 3, 2, 1))
            layers.append(nn.Sequential(*[
                RefBlock(dims[i], region_sizes[i], (j % periods[i]) * steps[i], mlp_ratios[i])
                for j in range(depths[i])]))
        self.network = nn.ModuleList(layers)
        self.norm = nn.BatchNorm2d(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_stages(self, x):
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.network):
            x = layer(x)
            if i % 2 == 0:
                outs.append(x)
        return outs

    def forward(self, x):
        x = self.norm(self.forward_stages(x)[-1])
        return self.head(x.mean(dim=(2, 3)))


def randomize_(model, seed=0):
    """Give every parameter and BN statistic random values, so that a wrong index shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith('running_var'):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model
