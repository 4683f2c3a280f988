"""Shared test setup.

mmseg 1.2.2's wheel installs a top-level package named ``tests``, so this suite never does
``import tests.x``; helpers live beside this file and are imported through the path added here.
"""
import os
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Tiny variants keep the CPU suite fast; widths stay even and >= 4.
TINY_ARCH = dict(depths=[1, 2, 2, 1], embed_dims=[8, 16, 24, 32])


def stage_sides(length):
    """The documented size rule, written out independently of the backbone: stem
    max(1, (L + 1) // 4), then ceil(L / 2) per stage."""
    sides = [max(1, (length + 1) // 4)]
    for _ in range(3):
        sides.append(-(-sides[-1] // 2))
    return sides


def save_code_running_checkpoint(path, marker, layout):
    """Save ``layout`` plus an object whose unpickling would create the file ``marker``: a
    checkpoint that runs code when loaded carelessly."""

    class RunsCode:
        def __reduce__(self):
            return (subprocess.call, (['touch', str(marker)],))

    torch.save(dict(layout, payload=RunsCode()), path)


def suite_threads():
    """2 threads, or the cores shared out among pytest-xdist's workers (``-n``)."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    return max(1, min(2, (os.cpu_count() or 2) // workers))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(suite_threads())
    yield


def pytest_report_header(config):
    """The CPU first: near-ties and every duration in the report depend on it."""
    from mmhire.env import cpu_description
    return [f'cpu: {cpu_description()}; torch {torch.__version__} kernels '
            f'{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads']


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end runs (minutes); skip with -m "not slow"')


# Minutes each on 2 cores (docs/testing.md): run first, so that with two xdist workers the
# short tests fill in around them instead of one long test finishing alone at the end
LONGEST_FIRST = ('test_hire_mlp_compile.py', 'test_mmengine_compile_trains_and_evaluates',
                 'test_exact_resume.py', 'test_backbone_export[circular-dynamo')


def pytest_collection_modifyitems(config, items):
    def rank(item):
        for i, name in enumerate(LONGEST_FIRST):
            if name in item.nodeid:
                return i
        return len(LONGEST_FIRST) + (0 if item.get_closest_marker('slow') else 1)
    items.sort(key=rank)  # stable: the file order within each rank


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """Small demo COCO and ADE sets made once per session; returns their parent folder."""
    from mmhire.datasets.demo_data import make_ade, make_coco
    root = tmp_path_factory.mktemp('demo_data')
    make_coco(str(root / 'demo_coco'), num_train=6, num_val=4, size=128, seed=1)
    make_ade(str(root / 'demo_ade'), num_train=6, num_val=4, size=128, seed=1)
    return str(root)
