"""mmhire.analysis.compile_cost: reading inductor's kernels and building them again."""
import glob

from mmhire.analysis.compile_cost import EMPTY_KERNEL, kernel_sources, rebuild_times

DOUBLE = ('#include <torch/csrc/inductor/cpp_prefix.h>\n'
          'extern "C" void kernel(const float* in_ptr0, float* out_ptr0)\n'
          '{ for (int i = 0; i < 4; i++) out_ptr0[i] = 2.0f * in_ptr0[i]; }\n')


def wrapper(*kernels):
    """A wrapper module as inductor writes it, with ``kernels`` as (name, argtypes, source)."""
    lines = ['from torch._inductor.async_compile import AsyncCompile',
             'async_compile = AsyncCompile()']
    for name, argtypes, source in kernels:
        lines.append(f"{name} = async_compile.cpp_pybinding({argtypes!r}, r'''{source}''')")
    return '\n'.join(lines) + '\nasync_compile.wait(globals())\n'


def test_kernel_sources_reads_each_distinct_kernel_once(tmp_path):
    (tmp_path / 'ab').mkdir()
    (tmp_path / 'ab' / 'forward.py').write_text(wrapper(
        ('cpp_fused_mul_0', ['const float*', 'float*'], DOUBLE),
        ('cpp_fused_fill_1', ['float*'], EMPTY_KERNEL)))
    (tmp_path / 'backward.py').write_text(wrapper(  # the same kernel again, another graph
        ('cpp_fused_mul_0', ['const float*', 'float*'], DOUBLE)))
    (tmp_path / 'notes.py').write_text('x = 1\n')
    found = kernel_sources(str(tmp_path))
    assert sorted(found) == sorted([(['const float*', 'float*'], DOUBLE),
                                    (['float*'], EMPTY_KERNEL)])


def test_rebuild_times_runs_gcc_for_every_build(tmp_path, monkeypatch):
    # every build is new to inductor's cache (a fresh kernel library on disk), so gcc really
    # ran: the warm-up, one per sampled kernel (two of the three), and the empty kernel
    # (inductor's probes of the vector ISA, built in a fresh cache, are plain .so files)
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path))
    kernels = [(['const float*', 'float*'], DOUBLE)] * 3
    times, empty = rebuild_times(kernels, sample=2)
    assert len(times) == 2 and all(t > 0 for t in times) and empty > 0
    assert len(glob.glob(str(tmp_path / '**' / '*.main.so'), recursive=True)) == 4
