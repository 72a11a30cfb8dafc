"""babysit for PyTorch Lightning (2.6): one callback and one call.

    from babysit.integrations.lightning import BabysitCallback, fit
    trainer = pl.Trainer(max_epochs=20, callbacks=[BabysitCallback(day="1 epoch", project="mnist")])
    fit(trainer, model, train_loader)      # instead of trainer.fit(model, train_loader)

What the callback does, in Lightning's own hooks (its loops are never copied):

- It adds a logger, so everything ``self.log`` sends to loggers (the loss, validation metrics,
  ``LearningRateMonitor``'s lr ...) reaches the store at Lightning's own step (the 0-based index
  of the optimizer step, which is babysit's numbering too); the divergence guard watches it.
- ``on_train_batch_end`` is the step boundary (nudges, pause, stop, rollback) and ends days of
  steps or time; ``on_train_epoch_end`` ends days of epochs. A day is ``trainer.save_checkpoint``
  (model, optimizers, schedulers, loop progress, callbacks' state) plus, in this callback's own
  state, the Python/NumPy/torch RNG states that Lightning does not save; babysit adds its
  manifest (size, sha256) and loads it only with ``weights_only=True``.
- A rollback sets ``trainer.should_stop``; ``fit`` enters ``trainer.fit`` again with
  ``ckpt_path`` = the verified day and ``weights_only=True``.

Exact: a day that ends at an epoch's end resumes bit for bit on CPU. Lightning resumes a
mid-epoch checkpoint of a plain ``DataLoader`` from the epoch's first batch, so a rollback to
such a day is marked non-reproducible (a loader with ``state_dict``/``load_state_dict``, e.g.
torchdata's ``StatefulDataLoader``, is resumed by Lightning itself).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
from lightning.pytorch.loggers import Logger

from babysit import checkpoint as ckpt
from babysit.errors import CheckpointError
from babysit.integrations._common import (
    CallbackBase,
    FrameworkRun,
    check_weights,
    find_callback,
)

__all__ = ["BabysitCallback", "BabysitLogger", "fit"]

_CKPT = "lightning.ckpt"


class BabysitLogger(Logger):
    """A Lightning logger that writes to babysit's store (added by ``BabysitCallback``)."""

    def __init__(self, callback: BabysitCallback):
        super().__init__()
        self._cb = callback

    @property
    def name(self) -> str:
        return "babysit"

    @property
    def version(self) -> int | str:
        run = self._cb.run
        return run.id if run is not None else 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        cb = self._cb
        if cb.fw is None:
            return
        ok = cb.fw.log(int(step if step is not None else cb.fw.step), metrics)
        if not ok and cb._trainer is not None and cb._obey(cb.fw.commands()):
            cb._trainer.should_stop = True

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """babysit records hyperparameters from ``config`` and the optimizer, not here."""


class BabysitCallback(CallbackBase, pl.Callback):
    """Babysit a ``lightning.pytorch.Trainer``: metrics, days, nudges, pause/stop, rollbacks, forks.

    ``day``, ``project``, ``config``, ``name``, ``strict``, ``guard``, ``root`` and ``store_url``
    are those of ``babysit.init``; pass ``run=`` to use a run you created. ``callback.run.hp``
    is the live view of the hyperparameters.

    >>> trainer = pl.Trainer(callbacks=[BabysitCallback(day="1 epoch", project="mnist")])
    >>> babysit.integrations.lightning.fit(trainer, model, train_loader)
    """

    FRAMEWORK, SUFFIX, VERSION = "lightning", "pl", lightning.__version__
    WRAPPER = "babysit.integrations.lightning.fit(trainer, model, ...)"
    PLAIN = "trainer.fit(...)"

    def __init__(self, day: str | int = "1 epoch", project: str = "default",
                 config: dict[str, Any] | None = None, *, name: str | None = None,
                 strict: bool = False, guard: Any = None, root: str | os.PathLike[str] | None = None,
                 store_url: str | None = None, run: Any = None):
        self._setup(day=day, project=project, config=config, name=name, strict=strict,
                    guard=guard, root=root, store_url=store_url, run=run)
        self._trainer: Any = None
        self._last_step = -1

    # ------------------------------------------------------------------ setup
    def _open(self, pl_module: Any = None) -> FrameworkRun:
        hparams = dict(getattr(pl_module, "hparams", None) or {})
        return self._framework_run({k: v for k, v in hparams.items()
                                    if isinstance(v, int | float | str) and not isinstance(v, bool)})

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._trainer = trainer
        if stage != "fit":
            return
        self._open(pl_module)
        if not any(isinstance(lg, BabysitLogger) for lg in trainer.loggers):
            trainer.loggers = [*trainer.loggers, BabysitLogger(self)]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        fw = self._open(pl_module)
        fw.bind(list(trainer.optimizers),
                [config.scheduler for config in trainer.lr_scheduler_configs])
        fw.fits = lambda folder: check_weights(pl_module, _saved_shapes(folder))
        self._last_step = int(trainer.global_step)
        restore = self._entered(self._last_step)
        if restore is not None:
            if restore.payload.get("batch") and not _resumable(trainer.train_dataloader):
                fw.not_reproducible(
                    f"day {restore.payload['day']} ends inside an epoch (batch "
                    f"{restore.payload['batch']}), and Lightning resumes a DataLoader without "
                    "state_dict() from the epoch's first batch")
            fw.restored(restore)

    # ------------------------------------------------------------------ the step boundary
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        fw = self.fw
        step = int(trainer.global_step)
        if fw is None or self._leaving or step == self._last_step:
            return      # accumulating gradients: not an optimizer step
        self._last_step = step
        boundary = fw.boundary(step)
        if boundary.day_due:
            last = batch_idx + 1 >= trainer.num_training_batches
            self._save_day(trainer, pl_module, 0 if last else batch_idx + 1)
        if self._obey(fw.commands() if fw.deferred else boundary):
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        fw = self.fw
        if fw is None or self._leaving:
            return
        epoch = int(trainer.current_epoch) + 1
        fw.set_epoch(epoch)
        spec = fw.day_spec
        if spec.unit == "epochs" and epoch % int(spec.amount) == 0:
            fw.day_ends()
            self._save_day(trainer, pl_module, 0)
            if self._obey(fw.commands()):
                trainer.should_stop = True

    def _save_day(self, trainer: Any, pl_module: Any, batch: int) -> None:
        fw = self.fw
        assert fw is not None
        if not all(bool(p.isfinite().all()) for p in pl_module.parameters()):
            fw.weights_diverged()
            return
        folder = fw.staging() / f"step{trainer.global_step}"
        folder.mkdir()
        # the whole state: model, optimizers, schedulers, loops, callbacks (Lightning's default
        # for a save; loading it back is always weights_only=True)
        trainer.save_checkpoint(folder / _CKPT)
        fw.save_day(folder, move=True, batch=batch)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """The RNG states Lightning does not save, in types ``weights_only=True`` loads."""
        return {"rng": ckpt.capture_rng()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        rng = state_dict.get("rng")
        if isinstance(rng, dict):
            missing = ckpt.restore_rng(rng)
            if missing and self.fw is not None:
                self.fw.not_reproducible(f"RNG states missing from the checkpoint: {missing}")
        elif self.fw is not None:
            self.fw.not_reproducible("the checkpoint holds no RNG states")


def _saved_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a day's ``state_dict``, memory-mapped (``weights_only=True``): the
    tensors' bytes are not read."""
    import torch
    try:
        saved = torch.load(folder / _CKPT, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:    # an unpickling refusal is final, whatever its type
        raise CheckpointError(f"{folder.name}/{_CKPT} cannot be read safely: {exc}") from exc
    state = saved.get("state_dict") if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{folder.name}/{_CKPT} holds no state_dict")
    return {str(k): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def _resumable(loader: Any) -> bool:
    """Lightning saves and restores the position of loaders that have a state (its _Stateful)."""
    loaders = loader if isinstance(loader, list | tuple) else [loader]
    return all(hasattr(x, "state_dict") and hasattr(x, "load_state_dict") for x in loaders)


def _callback(trainer: Any) -> BabysitCallback:
    return find_callback(trainer.callbacks, BabysitCallback)


def fit(trainer: Any, model: Any, *args: Any, ckpt_path: str | None = None, **kwargs: Any) -> None:
    """``trainer.fit(model, ...)`` that babysit can roll back.

    A rollback (from the dashboard, the CLI, Python or the guard) stops the fit at a step
    boundary and this function enters it again from the day's checkpoint, loaded with
    ``weights_only=True``; a fork or a restart of this script starts from its day.

    >>> fit(trainer, model, train_loader, val_loader)
    """
    cb = _callback(trainer)
    cb._wrapped = True
    cb._trainer = trainer
    fw = cb._open(model)
    restore = fw.start()
    try:
        while True:
            cb._restore = restore
            path = str(Path(restore.folder) / _CKPT) if restore is not None else ckpt_path
            if path is not None:
                kwargs["weights_only"] = True
            trainer.fit(model, *args, ckpt_path=path, **kwargs)
            restore, cb._restore = cb._restore, None
            if restore is None:
                break
    except BaseException as exc:
        # Lightning turns Ctrl-C into sys.exit(1) raised while handling the KeyboardInterrupt:
        # that run was interrupted (stopped), not crashed
        interrupted = isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt)
        fw.close(exc.__context__ if interrupted else exc)
        raise
    fw.close()
