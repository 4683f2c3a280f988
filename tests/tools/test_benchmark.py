"""tools/benchmark*.py run end to end at a tiny size (smoke tests: no timing is asserted)."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from config_helpers import ROOT


def run(args, script='tools/benchmark.py'):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT,
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
    assert 'CPU: ' in table and ' cores' in table  # every figure says where it came from
    assert 'fast+fused vs plain' in table
    assert osp.getsize(png) > 0


@pytest.mark.slow
def test_scaling_report(tmp_path):
    png = str(tmp_path / 'scaling.png')
    out = run(['32', '48', '--models', 'hire_s_fast', 'resnet50', '--threads', '1',
               '--warmup', '0', '--repeats', '1', '--batch', '1', '--png', png],
              'tools/benchmark_scaling.py')
    assert out.returncode == 0, out.stderr[-3000:]
    assert '| 32x32 |' in out.stdout and '| 800x1333 |' in out.stdout
    assert 'CPU: ' in out.stdout
    assert osp.getsize(png) > 0


@pytest.mark.slow
def test_rounds_and_allocator():
    out = run(['--size', '48', '64', '--models', 'hire_s_fast', 'hire_s_plain', '--no-train',
               '--threads', '1', '--warmup', '0', '--repeats', '1', '--rounds', '2',
               '--allocator', 'retain'])
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'median over 2 round-robin rounds' in out.stdout
    assert 'allocator retain' in out.stdout
    # each model ran once per round, interleaved
    progress = [line.split()[1] for line in out.stderr.splitlines() if 'round ' in line]
    assert [line for line in out.stderr.splitlines() if '(round 2/2)' in line]
    assert len(progress) == 4
    bad = run(['--rounds', '0'])
    assert bad.returncode == 2 and '--rounds must be at least 1' in bad.stderr


def test_retain_env_removes_page_faults():
    """Training steps in a process started with ``RETAIN_ENV`` page-fault far less than with
    the system defaults (the effect ``--allocator retain`` relies on)."""
    from mmhire.analysis.speed import RETAIN_ENV
    code = (
        'import resource, torch\n'
        'from mmhire import HireMLP\n'
        'torch.set_num_threads(1)\n'
        "m, x = HireMLP(arch='t').train(), torch.randn(1, 3, 320, 320)\n"
        'step = lambda: sum(o.mean() for o in m(x)).backward()\n'
        'faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n'
        'step(); step()\n'
        'before = faults()\n'
        'for _ in range(3): step()\n'
        'print(faults() - before)\n')
    counts = {}
    for mode, extra in (('system', {}), ('retain', RETAIN_ENV)):
        env = {k: v for k, v in os.environ.items() if k not in RETAIN_ENV}
        out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                             text=True, timeout=300, env={**env, **extra})
        assert out.returncode == 0, out.stderr[-3000:]
        counts[mode] = int(out.stdout.split()[-1])
    # measured: 31k-47k minor faults over three steps by default, under 1k retained
    assert counts['retain'] * 10 < counts['system'], counts


def test_hire_modules_table():
    out = run(['--size', '96', '128', '--threads', '1', '--warmup', '0', '--repeats', '1'],
              'tools/benchmark_hire_modules.py')
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith('| ') and 'x |' in line]
    assert [row.split('|')[2].strip() for row in rows] == ['24x32', '12x16', '6x8', '3x4']
    assert 'proj unfolded: small map' in out.stdout


def test_amp_rows_next_to_float32():
    from mmhire.engine import cpu_supports_bf16
    out = run(['--size', '48', '64', '--models', 'hire_s_fast', '--no-train', '--amp',
               '--threads', '1', '--warmup', '0', '--repeats', '1'])
    assert out.returncode == 0, out.stderr[-3000:]
    assert '| HireMLP-S (fast) |' in out.stdout and '| HireMLP-S (fast) bf16 |' in out.stdout
    assert 'HireMLP-S (fast) bf16 vs float32: inference' in out.stdout
    if not cpu_supports_bf16():  # the one line that says bf16 would not pay here
        assert 'no native bf16 instructions' in out.stdout


def test_bad_options_get_a_clear_error():
    for args, message in ((['--rounds', '0'], '--rounds must be at least 1'),
                          (['--repeats', '0'], 'must be at least 1'),
                          (['--device', 'cuda:0'], 'no CUDA GPU is visible')):
        out = run(args)
        if 'cuda' in args[-1] and 'no CUDA GPU' not in out.stderr:
            continue  # (a machine with a GPU)
        assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
        assert 'Traceback' not in out.stderr


@pytest.mark.slow
def test_onnxruntime_rows():
    """``--onnxruntime``: each backbone exported (TorchScript exporter) and timed in
    onnxruntime in the same run as eager, with the ratios the docs quote."""
    out = run(['--size', '48', '64', '--onnxruntime', '--models', 'hire_s_fast',
               'hire_s_fused+onnxruntime', 'resnet50+onnxruntime', '--no-train',
               '--threads', '1', '--warmup', '0', '--repeats', '1'])
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout
    assert '| HireMLP-S (fast, fused) onnxruntime |' in table
    assert '| onnxruntime backbone | export (s) |' in table
    assert 'HireMLP-S fused in onnxruntime vs HireMLP-S eager fast path: ' in table
    resnet_row = [line for line in table.splitlines()
                  if line.startswith('| ResNet-50 onnxruntime |') and 'x |' in line]
    assert resnet_row and resnet_row[0].endswith('| - | 1.00x |')
    bad = run(['--onnxruntime', '--device', 'cuda'])
    assert bad.returncode == 2 and 'CPU execution provider' in bad.stderr


@pytest.mark.slow
def test_compile_cost_table():
    """The cold compile of a small HireMLP in eval, under inductor with static sizes as users
    compile: the table, and the compiled outputs against eager (the suite's check of inductor
    on the whole backbone; stage 1's blocks 3 and 4 repeat blocks 1 and 2 and run their
    nested compile regions, see test_compile_stamps_out_repeated_eval_blocks)."""
    out = run(['--arch', '{"depths": [4, 1, 1, 1], "embed_dims": [8, 16, 24, 32]}',
               '--size', '61', '93', '--batch', '2', '--modes', 'eval', '--sample', '2'],
              'tools/benchmark_compile.py')
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith('| eval |')]
    assert len(rows) == 1, out.stdout
    cells = [c.strip() for c in rows[0].strip('|').split('|')]
    assert float(cells[2]) < 1e-4, rows[0]  # compiled against eager
    assert int(cells[3]) > 0  # distinct kernels found in the cache
    assert 'median of 2' in cells[-2]
    assert 'CPU: ' in out.stdout


def test_compile_cost_bad_arch_gets_a_clear_error():
    out = run(['--arch', '{depths: 1}'], 'tools/benchmark_compile.py')
    assert out.returncode == 2 and 'is not a JSON dict' in out.stderr
    for arch, says in (('x', "unknown arch 'x'"), ('{"depth": [1, 1, 1, 1]}', "keys ['depth']")):
        out = run(['--arch', arch], 'tools/benchmark_compile.py')
        assert out.returncode == 2 and says in out.stderr and 'Traceback' not in out.stderr
