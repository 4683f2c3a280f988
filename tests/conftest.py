"""Shared test setup.

mmseg 1.2.2's wheel installs a top-level package named ``tests``, so this suite never does
``import tests.x``; helpers live beside this file and are imported through the path added here.
"""
import ipaddress
import os
import socket
import subprocess
import sys

import pytest

# Under pytest-xdist each worker gets its share of the cores, inductor's C++ compiler pool
# included: by default every worker starts one gcc job per core, so two workers compiling at
# once ran four on two cores (measured on 2 cores, the same static compile test twice at once
# with empty kernel caches: 82 s each with 2 compile threads, 70 s with 1). Set before torch
# is imported: inductor reads it when its config loads.
if int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')) > 1:
    os.environ.setdefault('TORCHINDUCTOR_COMPILE_THREADS', str(max(
        1, (os.cpu_count() or 2) // int(os.environ['PYTEST_XDIST_WORKER_COUNT']))))

import torch  # noqa: E402

# Nothing in the suite reaches past this machine. In this process a connection to any address
# but loopback fails at once; in the tools' subprocesses, urllib (torch.hub's downloads) goes
# through a proxy on a closed local port.
os.environ.update(http_proxy='http://127.0.0.1:9', https_proxy='http://127.0.0.1:9',
                  no_proxy='127.0.0.1,localhost')
_connect = socket.socket.connect


def _connect_locally(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != 'localhost':
        try:
            local = ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            local = False
        if not local:
            raise ConnectionRefusedError(f'the test suite must not connect to {address[0]}')
    return _connect(sock, address)


socket.socket.connect = _connect_locally

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Tiny variants keep the CPU suite fast; widths stay even and >= 4.
TINY_ARCH = dict(depths=[1, 2, 2, 1], embed_dims=[8, 16, 24, 32])


def record_as_exported(monkeypatch):
    """From here on in the test, eager runs take the formulation an export (ONNX,
    ``torch.export``) records: the Hire modules' and blocks' checks answer as under one."""
    from mmhire.models.layers import branch_folding, hire_block
    monkeypatch.setattr(branch_folding, 'is_graph_capture', lambda: True)
    for module in (branch_folding, hire_block):
        monkeypatch.setattr(module, 'is_exporting', lambda: True)


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


# The longest tests, with their seconds in a clean-clone suite run on a 2-core AVX2 CPU
# (2026-12-05: the suite and single runs, docs/testing.md): a name matches every test whose
# node id contains it
LONGEST = {
    'test_compile_cost_table': 210,
    'test_compiled_hire_modules_with_symbolic_sizes': 200,
    'test_train_then_test_then_draw': 160,
    'test_compare_trains_under_one_recipe_and_collects_the_runs': 150,
    'test_demo_runs_both_tasks_end_to_end': 125,
    'test_sigkill_then_resume_gives_the_uninterrupted_weights[det]': 115,
    'test_mmengine_compile_trains_and_evaluates': 110,
    'test_cpu_dry_run_every_step_but_compile': 100,
    'test_backbone_export[circular-dynamo-fused]': 100,
    'test_onnxruntime_rows': 90,
    'test_mask_rcnn_deploys': 85,
    'test_dynamic_eval_is_one_graph': 85,
    'test_segmentation_train_test_and_draw': 85,
    'test_sigkill_then_resume_gives_the_uninterrupted_weights[seg]': 75,
    'test_segmentors_deploy[upernet': 65,
    'test_dist_train_and_test_two_processes_on_cpu': 65,
}


def _estimate(item):
    return next((s for name, s in LONGEST.items() if name in item.nodeid), 0)


def _chunk_sizes(n, workers):
    """How pytest-xdist's worksteal scheduler first splits ``n`` tests: in order, the first
    worker ``n // workers`` of them, the next an even share of the rest, and so on."""
    sizes = []
    for i in range(workers):
        sizes.append((n - sum(sizes)) // (workers - i))
    return sizes


def pytest_collection_modifyitems(config, items):
    """Spread the longest tests over the workers, each worker's share first.

    xdist's worksteal scheduler hands each worker a contiguous block of the collection and
    lets an idle worker steal from the end of another's block. With the long tests all in one
    block, that worker ran them one after the other (about 1700 s of the suite's 2100 s) while
    the other ran everything else. Here the long tests are dealt out longest first, each to
    the block with the least long-test time so far, and start their block; the short tests
    fill the blocks in file order, and the stealing balances the rest."""
    workers = int(getattr(config, 'workerinput', {}).get('workercount', 1))
    long_tests = sorted((i for i in items if _estimate(i)), key=_estimate, reverse=True)
    if workers < 2:
        items[:] = long_tests + [i for i in items if not _estimate(i)]
        return
    blocks, load = [[] for _ in range(workers)], [0] * workers
    for item in long_tests:
        k = load.index(min(load))
        blocks[k].append(item)
        load[k] += _estimate(item)
    short = iter(i for i in items if not _estimate(i))
    order = []
    for block, size in zip(blocks, _chunk_sizes(len(items), workers)):
        order += block
        order += [next(short) for _ in range(max(size - len(block), 0))]
    order += list(short)
    assert len(order) == len(items)
    items[:] = order


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """Small demo COCO and ADE sets made once per session; returns their parent folder."""
    from mmhire.datasets.demo_data import make_ade, make_coco
    root = tmp_path_factory.mktemp('demo_data')
    make_coco(str(root / 'demo_coco'), num_train=6, num_val=4, size=128, seed=1)
    make_ade(str(root / 'demo_ade'), num_train=6, num_val=4, size=128, seed=1)
    return str(root)
