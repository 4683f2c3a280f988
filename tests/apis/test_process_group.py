"""tools/train.py and tools/test.py close their process group after a successful run."""
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist
from config_helpers import ROOT

from mmhire.apis import close_process_group

# What the tools do at the end of a multi-process run: DDP steps, a metric all-reduce, then the
# runner (with its DDP model) dropped and the group closed. The function's module is loaded
# alone (torch and mmengine.config, not MMDetection: seconds per process less, eight runs of
# two processes); bare gloo scripts aborted at exit as often as the tools did.
TWO_PROCESS_RUN = '''
import importlib.util, torch, torch.distributed as dist
spec = importlib.util.spec_from_file_location('mmhire_apis_config', %r)
config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config)
close_process_group = config.close_process_group
dist.init_process_group('gloo')
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
for _ in range(3):
    model(torch.randn(2, 4)).sum().backward()
dist.all_reduce(torch.ones(3))
del model
close_process_group()
assert not dist.is_initialized()
print('closed', flush=True)
'''


def test_without_a_process_group_it_does_nothing():
    assert not dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()


def test_a_single_process_group_is_closed(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        close_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_exit_cleanly(tmp_path):
    # Left to interpreter exit, about one such run in three aborted on this kind of machine
    # (SIGABRT, "terminate called without an active exception"; measured in November). On
    # 2026-12-01 twenty runs without close_process_group all exited cleanly here (8 under
    # torchrun, 12 launched as below), so this checks the closing path's end of a run (both
    # processes exit 0, the group is gone), not the abort's rate. The two ranks are started
    # directly, with the environment torchrun gives them (torchrun adds 5 s a run);
    # tests/tools' dist test runs the tools under torchrun.
    script = tmp_path / 'run.py'
    script.write_text(TWO_PROCESS_RUN % os.path.join(ROOT, 'mmhire', 'apis', 'config.py'))
    for attempt in range(4):
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
                   MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), WORLD_SIZE='2')
        ranks = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(env, RANK=str(r), LOCAL_RANK=str(r)))
                 for r in range(2)]
        outs = [rank.communicate(timeout=300) for rank in ranks]
        for rank, (stdout, stderr) in zip(ranks, outs):
            assert rank.returncode == 0, f'run {attempt}: {stderr[-2000:]}'
            assert stdout.count('closed') == 1
