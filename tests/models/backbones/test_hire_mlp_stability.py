"""500 forward passes at random sizes: no memory growth, no output that depends on the past."""
import random

import psutil
import pytest
import torch

from mmhire import HireMLP


@pytest.mark.slow
def test_500_random_size_passes_no_growth_no_state():
    model = HireMLP(arch=dict(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16])).eval()
    probe = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        first = [o.clone() for o in model(probe)]
        rng = random.Random(0)
        process = psutil.Process()
        for i in range(500):
            if i == 50:  # allocator and oneDNN caches have warmed up by now
                rss_warm = process.memory_info().rss
            model(torch.randn(rng.randint(1, 2), 3, rng.randint(1, 96), rng.randint(1, 96)))
        rss_end = process.memory_info().rss
        last = model(probe)
    growth_mb = (rss_end - rss_warm) / 2**20
    assert growth_mb < 64, f'resident memory grew by {growth_mb:.1f} MB over 450 passes'
    for a, b in zip(first, last):
        assert torch.equal(a, b)  # eval outputs do not depend on earlier calls
