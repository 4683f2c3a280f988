"""tools/gpu_check.py: a CPU dry run end to end, NaN-safe checks, the time limit, and the
benchmark's process group killed without leftovers. No test needs a GPU."""
import importlib.util
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from config_helpers import ROOT

SCRIPT = osp.join(ROOT, 'tools', 'gpu_check.py')


def load_gpu_check():
    spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def run(args, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def wait_until_gone(pgid, seconds=10.0):
    """Live members of process group ``pgid`` after waiting up to ``seconds`` for none.
    (Zombies do not count: this container's PID 1 does not reap orphans, and a zombie holds no
    memory and no GPU; ``os.killpg(pgid, 0)`` would still find them.)"""
    until = time.monotonic() + seconds
    while gpu_check.group_members(pgid) and time.monotonic() < until:
        time.sleep(0.1)
    return gpu_check.group_members(pgid)


BENCH = ['--size', '64', '96', '--models', 'hire_s_fast', 'resnet50', '--warmup', '0',
         '--repeats', '1', '--threads', '1']
MODULE_CHECKS = ['fast path, outputs and input gradients',
                 'plain path, outputs and input gradients']
BACKBONE_CHECKS = ['fast, training step at batch 2', 'plain, training step at batch 2',
                   'fused, inference at batch 2', 'fast, training step at batch 1',
                   'plain, training step at batch 1', 'fused, inference at batch 1']
FP16_CHECKS = ['small HireMLP, default path, unit-scale inputs'] + [
    f'HireModule(64, 4, 2), circular, inputs of mean 5, 1x{size}, {path}, fp16'
    for size, paths in (('200x304', ('default path', 'plain path',
                                     'default path after fuse()')),
                        ('256x512', ('default path', 'default path after fuse()')))
    for path in paths]
FP16_BACKBONE_CHECKS = ['HireMLP-S at 1x3x256x512, default path, fp16',
                        'HireMLP-S at 1x3x256x512, fused,']


def check_dry_run(out, steps, names, rows_expected):
    """The steps ran in order with exactly the checks ``names``, then the benchmark printed
    ``rows_expected`` rows (eager, batch 1 rows before batch 2), and everything passed."""
    text = out.stdout
    for step in steps + ['7. benchmark:']:
        assert f'\n{step}' in '\n' + text, text[-3000:]
    positions = [text.index(f'{step}') for step in steps + ['7. benchmark:']]
    assert positions == sorted(positions)
    checks = [line for line in text.splitlines() if line.startswith(('  ok   ', '  FAIL '))]
    assert len(checks) == len(names), text
    for line, name in zip(checks, names):
        assert line[7:].startswith(name), (line, name)
    rows = [line for line in text.splitlines()
            if line.startswith('| ') and not line.startswith('| backbone')]
    assert len(rows) == rows_expected, text
    cells = [[c.strip() for c in row.strip('|').split('|')] for row in rows]
    half = rows_expected // 2
    assert [c[2] for c in cells] == ['1'] * half + ['2'] * half
    assert {c[3] for c in cells} == {'float32', 'bf16'}
    assert {c[0] for c in cells} == {'HireMLP-S (fast)', 'ResNet-50'}
    assert all(float(c[4]) > 0 and float(c[6]) >= 0 for c in cells), rows
    failed = [line for line in checks if line.startswith('  FAIL ')]
    assert out.returncode == 0 and not failed, (
        f'exit {out.returncode}, failed checks:\n' + '\n'.join(failed) + '\n' + text[-2000:]
        + out.stderr[-2000:])
    assert 'gpu_check: all checks passed, every benchmark row measured' in text


def test_cpu_dry_run_fp16_and_benchmark():
    """The script end to end on the CPU with the fp16 step (the real checks) and a tiny
    benchmark (inference rows: float32 and bf16 autocast, batch 1 and 2), rows printed as they
    come; exit 0 when all pass. About a minute here.

    Fails on code whose default path overflows in fp16 on large activations: the
    ``HireModule(64, 4, 2)`` checks on inputs of mean 5 ('default path', 'default path after
    fuse()') then report 100% non-finite outputs (measured on the code of commit c9e9fe7)."""
    out = run(['--device', 'cpu', '--no-compile', '--skip', 'module', 'backbone',
               'fp16-backbone', '--no-train', *BENCH])
    check_dry_run(out, ['3. fp16:'], FP16_CHECKS, 8)


@pytest.mark.slow
def test_cpu_dry_run_every_step_but_compile():
    """Every step but the torch.compile ones, at their real sizes (HireMLP-S's fp16 check at
    256x512, said out loud), and 16 benchmark rows. About 6 minutes on 2 shared cores."""
    out = run(['--device', 'cpu', '--no-compile', *BENCH, '--time-limit', '1500'], timeout=1600)
    assert '256x512, not 1024x2048' in out.stdout
    assert 'compile-' not in out.stdout
    check_dry_run(out, ['1. module:', '2. backbone:', '3. fp16:', '4. fp16-backbone:'],
                  MODULE_CHECKS + BACKBONE_CHECKS + FP16_CHECKS + FP16_BACKBONE_CHECKS, 16)


def test_without_a_gpu_it_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is visible')
    assert gpu_check.main([]) == 0  # (returns before anything starts)
    assert capsys.readouterr().out.strip().splitlines() == [
        'gpu_check: no CUDA device visible, nothing to check here (exit 0)']


def test_a_nan_error_is_a_failure():
    report = gpu_check.Report()
    assert not report.check('nan', math.nan, 1e-4)
    assert not report.check('inf', math.inf, 1e-4)
    assert report.check('small', 1e-6, 1e-4)
    assert report.failed == ['nan', 'inf'] and report.passed == 1
    # Python's max keeps a NaN only when it comes first; worst() keeps it wherever it is
    assert max([1e-6, math.nan]) == 1e-6
    assert math.isnan(gpu_check.worst([1e-6, math.nan, 1e-5]))
    assert math.isnan(gpu_check.worst([math.nan, 1e-6]))
    assert gpu_check.worst([1e-6, 1e-5]) == 1e-5
    assert gpu_check.worst([1e-6, math.inf, math.nan]) == math.inf
    assert sorted([math.nan, 1e-3, 1e-6], key=gpu_check.severity)[:2] == [1e-6, 1e-3]
    for bad in (float('nan'), float('inf'), -float('inf')):
        out = torch.tensor([1., 1., bad, 1.])
        assert '25.0% of the outputs non-finite' in gpu_check.nonfinite_note([out])


def test_the_time_limit_stops_the_run():
    out = run(['--device', 'cpu', '--time-limit', '1'], timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr[-3000:]
    text = out.stdout
    assert 'gpu_check: the time limit (1 s) stopped the run' in text
    for step in ('1. module', '2. backbone', '3. fp16', '4. fp16-backbone',
                 '5. compile-module', '6. compile-backbone', '7. benchmark'):
        assert f'  did not run: {step}' in text, text
    assert '| ResNet-50 (torch.compile) | infer | 2 | bf16 | did not run |' in text
    assert 'all checks passed' not in text


def test_a_running_step_is_interrupted_at_the_deadline(capsys):
    report = gpu_check.Report()
    clock = gpu_check.Clock(60, start=time.monotonic() - 60 + 3.5)  # deadline 0.5 s away
    start = time.monotonic()
    gpu_check.run_check(report, clock, '9. sleep: a step that would take a minute', 'sleep',
                        lambda report, args: time.sleep(60), None)
    assert time.monotonic() - start < 5
    assert report.stopped == ['9. sleep: a step that would take a minute']
    assert 'stopped by the time limit (60 s)' in capsys.readouterr().out
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    # a step that raises is a failure, and the run goes on
    report = gpu_check.Report()
    clock = gpu_check.Clock(60, start=time.monotonic())
    gpu_check.run_check(report, clock, '9. crash: a step that raises', 'crash',
                        lambda report, args: 1 / 0, None)
    assert report.failed == ['crash (crashed)'] and not report.stopped
    assert 'FAIL crash: crashed (ZeroDivisionError' in capsys.readouterr().out


GROUP = '''
import multiprocessing as mp, signal, subprocess, sys, time

def sleeper():
    time.sleep(600)

if __name__ == '__main__':
    worker = mp.get_context('forkserver').Process(target=sleeper)  # fork server + its worker
    worker.start()
    subprocess.Popen([sys.executable, '-c', 'import signal, time; '
                      'signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); '
                      'time.sleep(600)'])  # one that ignores SIGTERM: SIGKILL takes it
    time.sleep(1)
    print('ready', flush=True)
    time.sleep(600)
'''


def test_a_killed_process_group_leaves_no_process(tmp_path):
    """kill_group on a group shaped like the benchmark's (a leader, a fork server, its worker,
    and a process that ignores SIGTERM): nothing is left alive."""
    script = tmp_path / 'group.py'
    script.write_text(GROUP)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        while 'ready' not in proc.stdout.readline():
            pass
        pgid = proc.pid
        assert os.getpgid(proc.pid) == pgid and os.getpgrp() != pgid
        assert len(gpu_check.group_members(pgid)) >= 4
        left = gpu_check.kill_group(pgid, proc, grace=1.0)
        assert left == [] and wait_until_gone(pgid, 0) == []
        assert proc.returncode is not None
    finally:
        if gpu_check.group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def benchmark_only(time_limit):
    """Only the benchmark: 16 rows, far more than fit in ``time_limit`` here."""
    return ['--device', 'cpu', '--skip', 'module', 'backbone', 'fp16', 'fp16-backbone',
            '--no-compile', *BENCH, '--time-limit', str(time_limit)]


def test_the_time_limit_kills_the_benchmark_group(capsys):
    """The deadline falls while the benchmark runs (its fork server importing MMDetection, or
    a row): the benchmark's whole process group is killed, the row is reported as killed, the
    rows after it as not run, and it counts as a failure. (In this process, so that the
    deadline falls 8 s after the benchmark starts however slowly a script would start.)"""
    args = gpu_check.parse_args(benchmark_only(300))
    report = gpu_check.Report()
    start = time.monotonic()
    gpu_check.benchmark(report, gpu_check.Clock(8, start=start), args)
    assert time.monotonic() - start < 8 + 5
    text = capsys.readouterr().out
    pgid = int(re.search(r'process group (\d+) killed, no process left', text).group(1))
    assert wait_until_gone(pgid, 0) == []
    killed = [line for line in text.splitlines() if '| KILLED: time limit |' in line]
    assert len(killed) == 1, text
    assert len(report.failed) == 1 and 'killed by the time limit' in report.failed[0]
    assert report.not_run[-1] == '| ResNet-50 | train | 2 | bf16 | did not run |  |  |'
    assert report.stopped and not report.benchmarked


def test_a_failed_row_is_a_failure_and_the_next_row_runs(capsys, monkeypatch):
    from mmhire.analysis.speed import Job
    jobs = [Job('no_such_model', 'infer', (32, 32), warmup=0, repeats=1, threads=1),
            Job('resnet50', 'infer', (32, 32), warmup=0, repeats=1, threads=1)]
    monkeypatch.setattr(gpu_check, 'benchmark_jobs', lambda args: jobs)
    report = gpu_check.Report()
    gpu_check.benchmark(report, gpu_check.Clock(300, start=time.monotonic()),
                        gpu_check.parse_args(['--device', 'cpu']))
    text = capsys.readouterr().out
    assert "| no_such_model | infer | 1 | float32 | FAILED: ValueError: unknown model " in text
    assert re.search(r'\| ResNet-50 \| infer \| 1 \| float32 \| [0-9.]+ \|', text), text
    assert len(report.failed) == 1 and report.failed[0].startswith(
        "benchmark | no_such_model | infer | 1 | float32 | ValueError: unknown model ")
    assert report.benchmarked and not report.stopped


@pytest.mark.slow
def test_the_benchmark_group_dies_with_the_script():
    """gpu_check killed from outside (SIGKILL, so no handler of its own runs) while a row is
    being measured: the benchmark process, in a session of its own, takes its whole group
    down at once (parent-death signal), rather than when the row ends."""
    args = ['--device', 'cpu', '--skip', 'module', 'backbone', 'fp16', 'fp16-backbone',
            '--no-compile', '--size', '256', '384', '--models', 'resnet50', '--batches', '1',
            '--no-amp', '--no-train', '--warmup', '0', '--repeats', '100', '--threads', '1']
    proc = subprocess.Popen([sys.executable, SCRIPT, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    pgid = None
    try:
        for line in proc.stdout:
            found = re.search(r'benchmark process (\d+), in process group', line)
            if found:
                pgid = int(found.group(1))
                break
        # the benchmark process, its fork server and the row's worker (a row of 100 runs)
        until = time.monotonic() + 120
        while len(gpu_check.group_members(pgid)) < 3 and time.monotonic() < until:
            time.sleep(0.2)
        assert len(gpu_check.group_members(pgid)) >= 3
        time.sleep(1)
        proc.kill()
        proc.wait()
        assert wait_until_gone(pgid, 3) == []
    finally:
        proc.kill()
        if pgid and gpu_check.group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
