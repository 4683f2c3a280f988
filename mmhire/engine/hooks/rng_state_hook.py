"""Bitwise-exact resume: the random generators' state travels with every checkpoint."""
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ...registry import HOOKS
from ..rng_state import get_rng_state, set_rng_state

CHECKPOINT_KEY = 'rng_state'


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random generators with each checkpoint and restore them on ``--resume``.

    With it, a run that is killed and resumed ends with the same weights, bit for bit, as one
    that was never interrupted (same seed, same machine and thread count). Three details make
    that hold, each matching the order in which mmengine 0.10's loops call their hooks:

    * The state is restored where the uninterrupted run would next draw: at
      ``before_train_epoch`` for epoch-based loops (before the dataloader starts its workers,
      whose seeds come from the main generator), and for iteration-based loops just before
      the first new batch is fetched, after ``IterBasedTrainLoop`` has replayed the dataloader
      up to the resumed iteration (the replay draws augmentations when ``num_workers=0``, and
      the loop fetches a batch before it calls ``before_train_iter``).
    * Validation runs between a checkpoint and the next training step, so it is kept off the
      training stream: the generators are saved at ``before_val`` and put back at
      ``after_val``.
    * Dataloader workers hold their own generators. They are reseeded from the main generator
      whenever they start, except with ``persistent_workers=True`` in an epoch-based loop,
      where workers live across epochs and a resumed run cannot recreate their state; the hook
      warns about that configuration.

    In multi-process runs only rank 0 writes checkpoints, so only its generators are saved;
    other ranks resume from their seeds and the run is then close to, not exactly, the
    uninterrupted one.

    Example::

        custom_hooks = [dict(type='RNGStateHook')]
    """

    priority = 'VERY_HIGH'  # restore before any other hook draws a random number

    def __init__(self):
        self._pending = None
        self._val_stash = None

    def before_train(self, runner):
        loader = runner.train_loop.dataloader
        epoch_based = not isinstance(runner.train_loop, IterBasedTrainLoop)
        if epoch_based and getattr(loader, 'persistent_workers', False):
            print_log('RNGStateHook: the train dataloader keeps persistent workers in an '
                      'epoch-based loop; their generators cannot be restored, so a resumed run '
                      'will draw different augmentations. Set '
                      'train_dataloader.persistent_workers=False for a bitwise-exact resume.',
                      logger='current', level=30)
        if get_world_size() > 1:
            print_log('RNGStateHook: only rank 0 saves its generators; a resumed multi-process '
                      'run is close to the uninterrupted one, not bitwise equal.',
                      logger='current', level=30)

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint[CHECKPOINT_KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint):
        # mmengine calls this hook from ``Runner.resume`` only (``load_from`` without resume
        # starts a new run from its own seed).
        if CHECKPOINT_KEY not in checkpoint:
            print_log('RNGStateHook: the resumed checkpoint holds no generator state (saved '
                      'without this hook); training continues from the seed, so it will not '
                      'repeat the uninterrupted run exactly.', logger='current', level=30)
            return
        self._pending = checkpoint[CHECKPOINT_KEY]

    def before_train_epoch(self, runner):
        if self._pending is None:
            return
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            # The loop is about to replay ``loop.iter`` batches and then fetch the next one
            # before any hook runs: restore right between the two.
            loop.dataloader_iterator = _RestoreBeforeFetch(loop, skip=loop.iter,
                                                           state=self._pending)
        else:
            set_rng_state(self._pending)  # before the epoch's dataloader starts
        self._pending = None

    def before_val(self, runner):
        self._val_stash = get_rng_state()

    def after_val(self, runner):
        if self._val_stash is not None:
            set_rng_state(self._val_stash)
            self._val_stash = None


class _RestoreBeforeFetch:
    """Wraps ``IterBasedTrainLoop.dataloader_iterator`` for one resume.

    It passes the replayed batches through, restores the generators just before the first new
    batch is fetched, and then puts the loop's own iterator back.
    """

    def __init__(self, loop, skip, state):
        self._loop, self._inner = loop, loop.dataloader_iterator
        self._skip, self._state = skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0:
            set_rng_state(self._state)
            self._loop.dataloader_iterator = self._inner
        self._skip -= 1
        return next(self._inner)
