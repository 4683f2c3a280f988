"""The ``out_indices`` argument every backbone here takes, checked one way."""


def check_out_indices(out_indices, n, owner, error, unit='stage'):
    """``out_indices`` (an int or a sequence; negative ones count from the end) as a sorted
    tuple of distinct indices in ``0..n-1``; ``error`` (an MMHireError class) names ``owner``
    and the valid range for an empty or out-of-range one."""
    if isinstance(out_indices, int):
        out_indices = [out_indices]
    out_indices = list(out_indices)
    if not out_indices:
        raise error(f'{owner}: out_indices is empty; give {unit} indices in 0..{n - 1}')
    if not all(isinstance(i, int) and -n <= i < n for i in out_indices):
        raise error(f'{owner}: out_indices must be {unit} indices in 0..{n - 1} '
                    f'(or -{n}..-1), got {out_indices!r}')
    return tuple(sorted({i % n for i in out_indices}))
