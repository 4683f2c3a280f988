"""Launch counts: how many operators a forward or a training step dispatches, for
``tools/benchmark.py --count-launches``.

On a GPU every operator that computes something is at least one kernel launch, and a launch
costs about 5-10 us of host time whatever its size. A backbone whose count grows with the batch
(a per-image Python loop) pays that cost once per image; one whose count is flat in the batch
pays it once per call. The count here is a proxy for the launches, made on any device (the CPU
by default) without timing anything: every ATen operator that reaches the Python dispatcher
under :class:`LaunchCounter` (a ``TorchDispatchMode``) is counted, except

* **views**: operators whose schema returns an alias of an input (``OpOverload.is_view``:
  ``view``, ``t``, ``permute``, ``expand``, ``as_strided``, ``split``, ``detach``, ...) and
  ``aten._unsafe_view`` (a view whose schema does not say so); they only make new metadata;
* **allocations**: :data:`ALLOCATIONS` (``empty``, ``empty_like``, ``empty_strided``,
  ``empty_permuted``, ``new_empty``, ``new_empty_strided``, ``resize_``, ``resize_as_``),
  which reserve memory without a kernel. Factories that fill (``zeros``, ``ones``, ``full``,
  ``arange``, ``*_like``, random ones) launch a fill kernel on a GPU and *are* counted;
* **metadata queries**: :data:`METADATA` (``sym_size``, ``is_contiguous``, ``set_``, ...) when
  they reach the dispatcher at all.

Everything else counts once per call, in-place and ``out=`` operators included, and so does
``aten._local_scalar_dense`` (``.item()``: a device-to-host copy). Operators are counted as
the dispatcher sees them below autograd: composite ones (``conv2d``, ``batch_norm``,
``linear``, ``reshape``, ...) are already split into the operators they call, and a counted
operator's own internals (oneDNN or cuDNN calls below ``aten.convolution``) are not seen. So
the count is what the eager program asks for, not exactly what a device runs (one
``aten.convolution`` may be several cuDNN kernels), and it is the same on any device up to
such backend choices.

A training step's count includes autograd's backward operators (they run under the counter
too) and the loss: the sum of every output's sum, then ``backward()``, with the gradients
cleared (``set_to_none``) before the step, as ``optimizer.zero_grad()`` leaves them.
:func:`count_model` runs each step once, uncounted, before it counts.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Reserve memory, launch nothing
ALLOCATIONS = frozenset({aten.empty, aten.empty_like, aten.empty_strided, aten.empty_permuted,
                         aten.new_empty, aten.new_empty_strided, aten.resize_,
                         aten.resize_as_})
# Views whose schema does not mark the result as an alias
VIEWS = frozenset({aten._unsafe_view})
# Read or set sizes, strides and storage: no kernel
METADATA = frozenset({aten.sym_size, aten.sym_stride, aten.sym_numel, aten.sym_storage_offset,
                      aten.size, aten.stride, aten.dim, aten.numel, aten.storage_offset,
                      aten.is_contiguous, aten.is_strides_like_format,
                      aten.is_non_overlapping_and_dense, aten.is_same_size, aten.set_})

BATCHES = (1, 2, 8)  # the batch sizes of the table
SHAPE = (256, 320)  # its input size, H x W


def is_launch(func: torch._ops.OpOverload) -> bool:
    """Whether a dispatched operator counts as a launch: not a view, an allocation or a
    metadata query (the rule of this module's docstring)."""
    packet = func.overloadpacket
    return not (func.is_view or packet in VIEWS or packet in ALLOCATIONS or packet in METADATA)


class LaunchCounter(TorchDispatchMode):
    """Counts the operators dispatched while it is active (``with LaunchCounter() as c:``).

    Attributes:
        ops (Counter): Launches per operator overload name (``'aten.add.Tensor'``).
        skipped (Counter): Views, allocations and metadata queries per name, not counted.
    """

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.skipped: Counter = Counter()

    @property
    def total(self) -> int:
        """Launches counted so far."""
        return sum(self.ops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.ops if is_launch(func) else self.skipped)[str(func)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], Any]) -> LaunchCounter:
    """Run ``fn()`` once under a :class:`LaunchCounter` and return the counter (per-operator
    counts in ``.ops``, the skipped ones in ``.skipped``)."""
    with LaunchCounter() as counter:
        fn()
    return counter


def count_launches(fn: Callable[[], Any]) -> int:
    """The number of launches (see the module docstring) that ``fn()`` dispatches, backward
    operators included when ``fn`` calls ``backward()``."""
    return count_ops(fn).total


def forward_step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """An inference call of ``model`` on ``x``: eval mode, under ``torch.no_grad()``."""
    model.eval()  # (mmdet's ResNet.train() returns None: no chaining)

    def step():
        with torch.no_grad():
            return model(x)
    return step


def training_step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """A training step of ``model`` on ``x``: train mode, forward, the sum of the sums of its
    outputs, backward; the gradients are cleared before each step, outside the count."""
    model.train()

    def step():
        outs = model(x)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        sum(o.sum() for o in outs).backward()
    return step


def count_model(model: torch.nn.Module, shape: Tuple[int, int], batches: Sequence[int] = BATCHES,
                train: bool = True, device: str = 'cpu', warmup: bool = True,
                per_op: bool = False) -> Tuple[Dict[int, Any], Optional[Dict[int, Any]]]:
    """Launches of ``model`` per batch size, at inputs of ``3 x shape``.

    Args:
        model (nn.Module): The backbone; its mode is set here.
        shape (tuple[int, int]): Input height and width.
        batches (Sequence[int]): Batch sizes to count at.
        train (bool): Also count a training step; ``False`` for inference-only models.
        device (str): Where the model and the inputs are.
        warmup (bool): Run each step once, uncounted, at the first batch size, so that
            anything a first call does once (caches, lazy set-up) is not counted.
        per_op (bool): Give each count as a ``Counter`` of launches per operator
            (:attr:`LaunchCounter.ops`) instead of its total.

    Returns:
        tuple[dict, dict | None]: ``{batch: launches}`` of the forward and of the training
        step (``None`` when ``train`` is false).
    """
    model = model.to(device)
    modes = [(forward_step, {})] + ([(training_step, {})] if train else [])
    for make, counts in modes:
        for i, batch in enumerate(batches):
            x = torch.randn(batch, 3, *shape, device=device)
            step = make(model, x)
            if warmup and i == 0:
                step()
            model.zero_grad(set_to_none=True)
            counter = count_ops(step)
            counts[batch] = counter.ops if per_op else counter.total
            model.zero_grad(set_to_none=True)
    return modes[0][1], (modes[1][1] if train else None)


def per_image(counts: Dict[int, int]) -> List[float]:
    """What each extra image adds between consecutive batch sizes of ``counts``: for
    batches 1, 2, 8 ``[c2 - c1, (c8 - c2) / 6]``. All zeros means the count is flat."""
    batches = sorted(counts)
    return [(counts[b] - counts[a]) / (b - a) for a, b in zip(batches, batches[1:])]


@dataclass
class LaunchRow:
    """One backbone's launch counts: ``forward`` and ``train`` map a batch size to its
    count; ``train`` is ``None`` for an inference-only model."""
    model: str
    label: str
    forward: Dict[int, int]
    train: Optional[Dict[int, int]]


def launch_row(name: str, shape: Tuple[int, int] = SHAPE, batches: Sequence[int] = BATCHES,
               train: bool = True, device: str = 'cpu') -> LaunchRow:
    """Build the benchmark backbone ``name`` (a name of
    :data:`mmhire.analysis.speed.MODELS`, built by :func:`mmhire.analysis.speed.build`) and
    count its launches; ``train=False`` or an inference-only model (fused) leaves the
    training counts out."""
    from .speed import INFERENCE_ONLY, build, label
    torch.manual_seed(0)
    train = train and name not in INFERENCE_ONLY
    forward, training = count_model(build(name), shape, batches, train=train, device=device)
    return LaunchRow(name, label(name), forward, training)


def _number(value: float) -> str:
    return f'{value:.1f}'.rstrip('0').rstrip('.')


def format_table(rows: Sequence[LaunchRow], train: bool = True) -> str:
    """The markdown table of ``rows``: launches per batch size of the forward and of the
    training step, and what each extra image adds (:func:`per_image`); ``-`` where a model
    has no training step; ``train=False`` leaves the training columns out."""
    batches = sorted(rows[0].forward)
    steps = '/'.join(f'{a}->{b}' for a, b in zip(batches, batches[1:]))
    header = ['backbone']
    modes = [('forward', 'forward')] + ([('train', 'training step')] if train else [])
    for _, title in modes:
        header += [f'{title} b{b}' for b in batches]
        header.append(f'{title}: each extra image adds ({steps})')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        cells = [row.label]
        for attr, _ in modes:
            counts = getattr(row, attr)
            if counts is None:
                cells += ['-'] * (len(batches) + 1)
                continue
            cells += [str(counts[b]) for b in batches]
            cells.append(' / '.join(_number(v) for v in per_image(counts)))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
