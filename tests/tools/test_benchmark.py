"""tools/benchmark.py runs end to end at a tiny size (a smoke test: no timing is asserted)."""
import os.path as osp
import subprocess
import sys

import pytest
from config_helpers import ROOT


def run(args):
    return subprocess.run([sys.executable, 'tools/benchmark.py', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_benchmark_table_and_chart(tmp_path):
    png = str(tmp_path / 'bench.png')
    out = run(['--size', '64', '96', '--threads', '1', '--warmup', '0', '--repeats', '1',
               '--png', png])
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout
    for label in ('HireMLP-S (fast)', 'HireMLP-S (fast, fused)', 'HireMLP-S (plain)',
                  'ResNet-50', 'Swin-T', 'PVTv2-b2'):
        assert f'| {label} |' in table
    assert 'float32 matmul rate' in table and 'fast vs plain' in table
    assert 'fast+fused vs plain' in table
    assert osp.getsize(png) > 0


@pytest.mark.slow
def test_scaling_report(tmp_path):
    png = str(tmp_path / 'scaling.png')
    out = run(['--scaling', '32', '48', '--models', 'hire_s_fast', 'resnet50', '--threads', '1',
               '--warmup', '0', '--repeats', '1', '--batch', '1', '--png', png])
    assert out.returncode == 0, out.stderr[-3000:]
    assert '| 32x32 |' in out.stdout and '| 800x1333 |' in out.stdout
    assert osp.getsize(png) > 0
