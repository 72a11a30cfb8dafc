"""babysit for the Hugging Face ``Trainer`` (transformers 5.x): one callback and one call.

    from babysit.integrations.huggingface import BabysitCallback, train
    trainer = Trainer(model=model, args=args, train_dataset=ds,
                      callbacks=[BabysitCallback(day="200 steps", project="gpt2")])
    train(trainer)                  # instead of trainer.train(): survives rollbacks

What the callback does, in the Trainer's own hooks (its loop is never copied):

- ``on_log``: everything the Trainer logs (loss, learning_rate, grad_norm, eval_*, epoch ...)
  goes to the store at babysit's step: the Trainer's ``global_step`` G logs what its G-th step
  produced, which babysit numbers G - 1 (the steps done before it, as ``run.log`` in babysit's
  own loop); the divergence guard watches it.
- ``on_step_end``: the step boundary (nudges, pause, stop, rollback). At a day's end it asks the
  Trainer to save (``control.should_save``) into a staging folder, and to log, so the loss it
  accumulates between logs restarts at the day's end and a resume logs the same values.
- ``on_save``: the Trainer's checkpoint folder (safetensors weights, optimizer, scheduler, RNG,
  trainer state) becomes the day, with babysit's manifest of every file's size and sha256.
- A rollback stops ``trainer.train`` at the boundary; ``train`` calls it again with
  ``resume_from_checkpoint`` = the verified day folder. transformers 5 loads every file of it with
  ``weights_only=True`` (numpy's array types allow-listed for the RNG file) or safetensors.

Nudges go to the Trainer's optimizer (Accelerate's wrapper passes ``param_groups`` through to the
real optimizer) and scale the ``LambdaLR`` schedules' ``base_lrs``, so the schedule keeps them.
"""

from __future__ import annotations

import enum
import json
import os
import warnings
from pathlib import Path
from typing import Any

import transformers
from transformers import TrainerCallback

from babysit.errors import CheckpointError
from babysit.integrations._common import (
    CallbackBase,
    FrameworkRun,
    check_weights,
    find_callback,
)

__all__ = ["BabysitCallback", "train"]

#: the TrainingArguments that a fork or a restart must not change for an exact resume
_ARGS_CONFIG = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "warmup_steps",
                "lr_scheduler_type", "per_device_train_batch_size",
                "gradient_accumulation_steps", "max_grad_norm", "seed")


class BabysitCallback(CallbackBase, TrainerCallback):
    """Babysit a ``transformers.Trainer``: metrics, days, nudges, pause/stop, rollbacks, forks.

    ``day``, ``project``, ``config``, ``name``, ``strict``, ``guard``, ``root`` and ``store_url``
    are those of ``babysit.init``; pass ``run=`` to use a run you created. ``callback.run.hp``
    is the live view of the hyperparameters (read it in your collator or ``compute_loss``).

    >>> trainer = Trainer(..., callbacks=[BabysitCallback(day="200 steps", project="gpt2")])
    >>> babysit.integrations.huggingface.train(trainer)
    """

    FRAMEWORK, SUFFIX, VERSION = "transformers", "hf", transformers.__version__
    WRAPPER = "babysit.integrations.huggingface.train(trainer)"
    PLAIN = "trainer.train()"

    def __init__(self, day: str | int = "500 steps", project: str = "default",
                 config: dict[str, Any] | None = None, *, name: str | None = None,
                 strict: bool = False, guard: Any = None, root: str | os.PathLike[str] | None = None,
                 store_url: str | None = None, run: Any = None):
        self._setup(day=day, project=project, config=config, name=name, strict=strict,
                    guard=guard, root=root, store_url=store_url, run=run)
        self._saving: tuple[int, Path, bool] | None = None
        self._output_dir: str | None = None

    # ------------------------------------------------------------------ setup
    def _open(self, args: Any) -> FrameworkRun:
        found = {}
        for key in _ARGS_CONFIG:
            value = getattr(args, key, None)
            value = value.value if isinstance(value, enum.Enum) else value
            if isinstance(value, int | float | str):
                found[key] = value
        return self._framework_run(found)

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                       lr_scheduler: Any = None, model: Any = None, **kwargs: Any) -> None:
        fw = self._open(args)
        fw.bind([optimizer], [lr_scheduler])
        if model is not None:
            fw.fits = lambda folder: check_weights(model, _saved_shapes(folder))
        restore = self._entered(int(state.global_step))
        if restore is not None:
            fw.restored(restore)
        self._check_exact(args)

    def _check_exact(self, args: Any) -> None:
        if getattr(args, "ignore_data_skip", False):
            self.fw.not_reproducible("ignore_data_skip=True: a resumed Trainer does not skip "  # type: ignore[union-attr]
                                     "the batches it trained on")

    # ------------------------------------------------------------------ the step boundary
    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    **kwargs: Any) -> Any:
        fw = self.fw
        if fw is None:
            return control
        boundary = fw.boundary(int(state.global_step))
        if boundary.day_due:
            self._request_save(args, state, control, model)
        elif self._obey(boundary):
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     **kwargs: Any) -> Any:
        fw = self.fw
        if fw is None or self._leaving:
            return control
        spec = fw.day_spec
        epoch = round(float(state.epoch or 0))
        whole = abs(float(state.epoch or 0) - epoch) < 1e-9     # not a fit stopped mid-epoch
        if spec.unit == "epochs" and whole and epoch > 0 and epoch % int(spec.amount) == 0 \
                and self._saving is None:
            fw.set_epoch(epoch)
            fw.day_ends()
            self._request_save(args, state, control, model)
        return control

    def _request_save(self, args: Any, state: Any, control: Any, model: Any) -> None:
        fw = self.fw
        assert fw is not None
        if model is not None and not _finite(model):
            fw.weights_diverged()
            if self._obey(fw.commands()):
                control.should_training_stop = True
            return
        user_wants = bool(control.should_save)
        if not user_wants:
            # the Trainer saves into output_dir and rotates the checkpoints it finds there:
            # a day written into a staging folder never costs the user one of theirs
            self._output_dir = args.output_dir
            args.output_dir = str(fw.staging())
        self._saving = (int(state.global_step), Path(args.output_dir), user_wants)
        control.should_save = True
        control.should_log = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        saving, self._saving = self._saving, None
        if self._output_dir is not None:
            args.output_dir, self._output_dir = self._output_dir, None
        if saving is None or self.fw is None:
            return control
        step, output_dir, user_wants = saving
        folder = output_dir / f"checkpoint-{step}"
        # training_args.bin is a pickle of the arguments that a resume never reads: a day keeps
        # only what resuming loads (safetensors, weights_only=True files, JSON)
        self.fw.save_day(folder, move=not user_wants, drop=("training_args.bin",))
        if self._obey(self.fw.commands()):
            control.should_training_stop = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
        fw = self.fw
        if fw is None or not logs or (self._leaving and "train_runtime" in logs):
            return control      # (a fit stopped for a rollback: its summary is not a step's)
        if not fw.log(max(int(state.global_step) - 1, 0), logs):
            # diverged: never save this state as a day; the guard acts at once
            if self._saving is not None:
                self._saving = None
                if self._output_dir is not None:
                    args.output_dir, self._output_dir = self._output_dir, None
                control.should_save = False
            if self._obey(fw.commands()):
                control.should_training_stop = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.fw is not None and self.fw.deferred and not self._leaving \
                and self._obey(self.fw.commands()):
            control.should_training_stop = True
        return control


def _saved_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a Trainer checkpoint's safetensors weights, read from their headers only
    (one file, or the shards its index lists)."""
    from safetensors import safe_open
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(f"{folder.name} holds no safetensors weights")
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        path = folder / name
        if path.parent != folder or not path.is_file():
            raise CheckpointError(f"{folder.name}'s index lists {name!r}, not a file in it")
        with safe_open(str(path), framework="pt") as f:
            keys = f.keys()     # (safe_open is not iterable)
            for key in keys:
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def _finite(model: Any) -> bool:
    import torch
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _callback(trainer: Any) -> BabysitCallback:
    return find_callback(trainer.callback_handler.callbacks, BabysitCallback)


def train(trainer: Any, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
    """``trainer.train(...)`` that babysit can roll back: returns the Trainer's TrainOutput.

    A rollback (from the dashboard, the CLI, Python or the guard) stops the fit at a step
    boundary and this function enters it again from the day's checkpoint; a fork or a restart
    of this script starts from its day. The run ends ``finished``, ``stopped`` or ``crashed``.

    >>> train(trainer)
    """
    cb = _callback(trainer)
    cb._wrapped = True
    fw = cb._open(trainer.args)
    restore = fw.start()
    if restore is not None and resume_from_checkpoint:
        warnings.warn("babysit starts this run from its day checkpoint; resume_from_checkpoint "
                      "is ignored", stacklevel=2)
    try:
        while True:
            cb._restore = restore
            start = str(restore.folder) if restore is not None else resume_from_checkpoint
            output = trainer.train(resume_from_checkpoint=start, **kwargs)
            restore, cb._restore = cb._restore, None
            if restore is None:
                break
            _unwrap_optimizer(trainer)
    except BaseException as exc:
        fw.close(exc)
        raise
    fw.close()
    return output


def _unwrap_optimizer(trainer: Any) -> None:
    """Hand the next ``train`` call the optimizer itself, not Accelerate's wrapper around it
    (``accelerator.prepare`` would wrap the wrapper at every rollback)."""
    opt = trainer.optimizer
    from accelerate.optimizer import AcceleratedOptimizer
    while isinstance(opt, AcceleratedOptimizer):
        opt = opt.optimizer
    trainer.optimizer = opt
