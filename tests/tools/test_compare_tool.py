"""tools/compare.py end to end on small variants, and its one-line errors."""
import json
import os.path as osp
import subprocess
import sys

import pytest


ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run(*args):
    return subprocess.run([sys.executable, 'tools/compare.py', *args], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_compare_writes_the_report(tmp_path):
    out = tmp_path / 'cmp'
    done = run('--small', '--backbones', 'hire_t', 'mlp_mixer', '--sizes', '224x224', '61x45',
               '--scaling', '32', '64', '--repeats', '1', '--warmup', '0', '--out', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'flexibility' in done.stdout and 'report:' in done.stdout  # progress lines
    report = json.loads((out / 'report.json').read_text())
    hire, mixer = report['backbones']['hire_t'], report['backbones']['mlp_mixer']
    assert hire['sizes'] == {'224x224': 'ok', '61x45': 'ok'}
    assert all(cells == {'224x224': 'ok', '61x45': 'ok'} for cells in hire['sizes_in'].values())
    assert set(hire['sizes_in']) == {'retinanet', 'semantic_fpn'}
    assert hire['params_m'] > 0 and hire['gmacs'] > 0 and hire['latency_ms'] > 0
    assert mixer['sizes']['224x224'] == 'ok'
    assert "doesn't support dynamic input shape" in mixer['sizes']['61x45']
    assert all(c.startswith('no feature pyramid') for cells in mixer['sizes_in'].values()
               for c in cells.values())
    text = (out / 'report.md').read_text()
    assert '| HireMLP-T | ok | ok |' in text and 'MLP-Mixer-B/16' in text


@pytest.mark.slow
def test_compare_trains_under_one_recipe_and_collects_the_runs(tmp_path):
    """The train check on small variants (one step of RetinaNet and two of Semantic FPN per
    backbone), then --collect on the work dirs it wrote: the same metrics, read back."""
    out = tmp_path / 'cmp'
    done = run('--checks', 'train', '--small', '--backbones', 'hire_t', 'resnet18', 'mlp_mixer',
               '--tasks', 'retinanet', 'semantic_fpn', '--seeds', '0', '--epochs', '1',
               '--iters', '2', '--num-train', '4', '--num-val', '2',
               '--data-dir', str(tmp_path / 'data'), '--out', str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert 'train [1/4] RetinaNet + HireMLP-T, seed 0' in done.stdout  # progress lines
    report = json.loads((out / 'report.json').read_text())['backbones']
    for name in ('hire_t', 'resnet18'):
        for task, key in (('retinanet', 'coco/bbox_mAP'), ('semantic_fpn', 'mIoU')):
            summary = report[name]['metrics'][task]
            assert summary['n'] == 1 and 'error' not in summary, summary
            assert 0 <= summary['mean'][key] <= 100 and summary['std'][key] == 0
            assert summary['s_per_step'] > 0 and summary['peak_rss_mb'] > 100
    assert all(s['error'].startswith('no feature pyramid')
               for s in report['mlp_mixer']['metrics'].values())
    text = (out / 'report.md').read_text()
    assert '## Accuracy under one recipe' in text and '### Semantic FPN' in text
    assert (out / 'accuracy_vs_latency.png').stat().st_size > 0

    again = tmp_path / 'collected'
    done = run('--checks', '--collect', str(out / 'runs'), '--out', str(again))
    assert done.returncode == 0, done.stderr[-3000:]
    collected = json.loads((again / 'report.json').read_text())['backbones']
    assert set(collected) == {'hire_t_small', 'resnet18_small'}
    for name in ('hire_t', 'resnet18'):
        read = collected[f'{name}_small']['metrics']['semantic_fpn']
        assert read['mean'] == report[name]['metrics']['semantic_fpn']['mean']
        for key in ('s_per_step', 'peak_rss_mb'):
            assert read[key] == report[name]['metrics']['semantic_fpn'][key]


def test_compare_bad_input_is_one_line():
    cases = [(['--backbones', 'hire_t', 'resnet51'], "unknown backbone(s) 'resnet51'; known:"),
             (['--sizes', '800by1216'], "cannot read the size '800by1216'"),
             (['--checks', 'train', '--tasks', 'cityscapes'], "unknown task(s) 'cityscapes'"),
             (['--checks', '--collect', '/nonexistent'], '--collect: /nonexistent is not a')]
    for args, message in cases:
        done = run(*args)
        assert done.returncode == 1 and message in done.stderr, done.stderr[-2000:]
        assert 'Traceback' not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_compare_refuses_a_folder_with_a_report(tmp_path):
    (tmp_path / 'report.json').write_text('{}')
    done = run('--out', str(tmp_path))
    assert done.returncode == 1 and 'already holds a report' in done.stderr
    assert (tmp_path / 'report.json').read_text() == '{}'


def test_compare_help_and_list():
    helped = run('--help')
    assert helped.returncode == 0 and 'Quick start:' in helped.stdout
    assert 'python tools/compare.py --small' in helped.stdout
    assert '--collect' in helped.stdout and '--seeds' in helped.stdout
    listed = run('--list')
    assert listed.returncode == 0 and 'mlp_mixer' in listed.stdout and 'HireMLP-T' in listed.stdout
