"""The arguments the backbones here share (``out_indices``, ``frozen_stages``,
``drop_path_rate``), each checked one way; ``error`` is the backbone's MMHireError class and
``owner`` its name, both put in the message."""
import numbers


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


def check_frozen_stages(frozen_stages, n, owner, error, meaning='-1 freezes nothing'):
    """``frozen_stages`` as given, an int in ``-1..n``; ``meaning`` says what the ends do in
    ``owner``'s convention."""
    if not (isinstance(frozen_stages, int) and not isinstance(frozen_stages, bool)
            and -1 <= frozen_stages <= n):
        raise error(f'{owner}: frozen_stages must be an int in [-1, {n}] ({meaning}), '
                    f'got {frozen_stages!r}')
    return frozen_stages


def check_drop_path_rate(drop_path_rate, owner, error):
    """``drop_path_rate`` as given, a number in ``[0, 1)``."""
    if not (isinstance(drop_path_rate, numbers.Real) and not isinstance(drop_path_rate, bool)
            and 0 <= drop_path_rate < 1):
        raise error(f'{owner}: drop_path_rate must be a number in [0, 1), '
                    f'got {drop_path_rate!r}')
    return drop_path_rate
