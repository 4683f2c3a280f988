"""The custom ops torch.compile sees (mmhire::shift_pad_fold, its backward, unfold_crop_unshift):
torch.library's own consistency checks (fake sizes, autograd registration, schema), and
gradients and second derivatives against finite differences."""
import itertools

import pytest
import torch

from mmhire.models.layers import compile_ops

# every pad mode; region sizes 1-4; shifts 0, 1, 3 (also beyond a 2-long map)
CASES = list(itertools.product(['circular', 'constant', 'replicate'], [1, 2, 3, 4], [0, 1, 3]))
SIZES = ((5, 7), (1, 2))  # odd sizes; a map shorter than a region (pads longer than the map)


def _inputs(dim, size, region_size, shift, pad_mode):
    x = torch.randn(2, 3, *size, dtype=torch.double, requires_grad=True)
    folded = compile_ops.shift_pad_fold(x, dim, region_size, shift, pad_mode)
    return x, torch.randn_like(folded).requires_grad_()


@pytest.mark.parametrize('pad_mode,region_size,shift', [
    ('circular', 3, 1), ('constant', 4, 3), ('replicate', 2, 0), ('circular', 1, 0)])
def test_ops_pass_torch_library_checks(pad_mode, region_size, shift):
    """Fake sizes, schema, autograd registration (what the compiler relies on)."""
    p = region_size
    for dim, size in itertools.product([2, 3], SIZES):
        x, y = _inputs(dim, size, p, shift, pad_mode)
        length = x.shape[dim]
        torch.library.opcheck(torch.ops.mmhire.shift_pad_fold.default,
                              (x, dim, p, shift, pad_mode))
        torch.library.opcheck(torch.ops.mmhire.unfold_crop_unshift.default,
                              (y, dim, length, p, shift))
        torch.library.opcheck(torch.ops.mmhire.shift_pad_fold_backward.default,
                              (y, dim, length, p, shift, pad_mode))


@pytest.mark.parametrize('pad_mode,region_size,shift', CASES)
def test_gradients_and_second_derivatives(pad_mode, region_size, shift):
    p = region_size
    for dim, size in itertools.product([2, 3], SIZES):
        x, y = _inputs(dim, size, p, shift, pad_mode)
        length = x.shape[dim]
        assert torch.autograd.gradgradcheck(
            lambda t: compile_ops.shift_pad_fold(t, dim, p, shift, pad_mode), (x,))
        assert torch.autograd.gradgradcheck(
            lambda t: compile_ops.unfold_crop_unshift(t, dim, length, p, shift), (y,))


def test_output_never_aliases_the_input():
    """With nothing to move (region size 1, shift 0) the plain code returns its input; the op
    must still return new memory (torch.library's rule for custom ops)."""
    x = torch.randn(1, 2, 3, 4)
    out = compile_ops.shift_pad_fold(x, 2, 1, 0, 'circular')
    assert torch.equal(out, x)
    assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    back = compile_ops.unfold_crop_unshift(x, 3, 4, 1, 0)
    assert back.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
