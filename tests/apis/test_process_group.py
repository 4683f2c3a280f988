"""tools/train.py and tools/test.py close their process group after a successful run."""
import os
import subprocess
import sys

import pytest
import torch.distributed as dist
from config_helpers import ROOT

from mmhire.apis import close_process_group

# What the tools do at the end of a multi-process run: DDP steps, a metric all-reduce, then the
# runner (with its DDP model) dropped and the group closed.
TWO_PROCESS_RUN = '''
import torch, torch.distributed as dist
from mmhire.apis import close_process_group
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


@pytest.mark.slow
def test_two_gloo_processes_exit_cleanly(tmp_path):
    # Left to interpreter exit, about one such run in three aborted (SIGABRT, "terminate called
    # without an active exception"); eight clean runs in a row make a regression visible.
    script = tmp_path / 'run.py'
    script.write_text(TWO_PROCESS_RUN)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    for attempt in range(8):
        out = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
                              '2', '--master_port', '29541', str(script)],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, f'run {attempt}: {out.stderr[-2000:]}'
        assert out.stdout.count('closed') == 2
