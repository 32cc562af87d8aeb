"""The run folder of K models trained together (``train.many``): what is
saved after every epoch, and how it is read back.

    RUN/config.json          "kind": "many"; the model spec, the K train specs and
                             optimisers, the K normalisers, the data's fingerprints,
                             ``chosen`` (the index of the best validation loss so far,
                             or of the choice :func:`record_choice` recorded, with
                             ``chosen_by`` saying how it was made)
    RUN/checkpoint.msgpack   the K last states stacked [K, ...], the K best params
                             stacked, and the loop's progress (epoch, step, per model:
                             best loss and epoch, epochs without improvement, whether
                             it still trains, why it stopped, its epoch records)
    RUN/metrics.jsonl        one line per model and epoch: {"model": k, "epoch": ...}

As with one model, the checkpoint is written before the epoch's metrics
lines, and a resume rewrites metrics.jsonl from the checkpoint, so a kill
between the two never loses or repeats an epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax_lstm_ae.data import Normalizer
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.nn.spec import ModelSpec, build
from jax_lstm_ae.train.checkpoint import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, Run, RunError, atomic_write,
                                          load_checkpoint, read_config, save_checkpoint)
from jax_lstm_ae.train.many_steps import many_optimizer, stack_trees
from jax_lstm_ae.train.spec import TrainSpec
from jax_lstm_ae.train.step import TrainState, create_train_state


@dataclass
class ManyProgress:
    """Where the K models' loop stands after ``epoch`` epochs (saved in the checkpoint)."""

    k: int
    epoch: int = 0
    step: int = 0
    active: list = field(default_factory=list)  # per model: still training
    errors: list = field(default_factory=list)  # per model: why it stopped on a non-finite value, or None
    histories: list = field(default_factory=list)  # per model: its epoch records
    best_loss: list = field(default_factory=list)  # per model: its best watched loss (inf before its first epoch)
    best_epoch: list = field(default_factory=list)  # per model: the epoch of best_loss (-1: none yet)
    bad: list = field(default_factory=list)  # per model: epochs without improvement
    best_params: list = field(default_factory=list)  # per model: host params of its best epoch, or None
    compile_s: float | None = None

    def __post_init__(self):
        k = self.k
        for name, value in (("active", True), ("errors", None), ("best_loss", float("inf")), ("best_epoch", -1),
                            ("bad", 0), ("best_params", None)):
            if not getattr(self, name):
                setattr(self, name, [value] * k)
        if not self.histories:
            self.histories = [[] for _ in range(k)]

    def reactivate(self, specs) -> None:
        """A model trains on unless it failed or its (maybe larger) patience ran out."""
        self.active = [self.errors[k] is None and not (specs[k].patience is not None and self.best_epoch[k] > 0
                                                       and self.bad[k] >= specs[k].patience)
                       for k in range(self.k)]

    def chosen(self) -> int | None:
        """The index of the lowest best loss among the models that did not fail."""
        ok = [k for k in range(self.k) if self.errors[k] is None and self.best_epoch[k] > 0]
        return min(ok, key=lambda k: self.best_loss[k]) if ok else None

    def to_extra(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "active": self.active, "errors": self.errors,
                "histories": self.histories, "best_epoch": self.best_epoch, "bad": self.bad,
                "best_loss": [float(b) if np.isfinite(b) else None for b in self.best_loss],
                "compile_s": self.compile_s}

    @classmethod
    def from_extra(cls, extra: dict, best_params) -> "ManyProgress":
        k = len(extra["active"])
        prog = cls(k, int(extra["epoch"]), int(extra["step"]), list(extra["active"]), list(extra["errors"]),
                   [list(h) for h in extra["histories"]], [float("inf") if b is None else float(b)
                                                           for b in extra["best_loss"]],
                   list(extra["best_epoch"]), list(extra["bad"]), compile_s=extra.get("compile_s"))
        prog.best_params = [jax.tree.map(lambda a, k=k: np.asarray(a[k]), best_params) if prog.best_epoch[k] > 0
                            else None for k in range(k)]
        return prog


# ------------------------------------------------------------------ writing
def write_config(workdir: Path, config: dict, normalizers) -> None:
    cfg = dict(config, normalizers=[n.to_dict() for n in normalizers])
    atomic_write(workdir / CONFIG_FILE, json.dumps(cfg, indent=2, allow_nan=False) + "\n")


def _metrics_lines(histories, epochs=None) -> str:
    return "".join(json.dumps({"model": k, **rec}, allow_nan=False) + "\n" for k, hist in enumerate(histories)
                   for rec in hist if epochs is None or rec["epoch"] in epochs)


def save_epoch(workdir: Path, config: dict, normalizers, state: TrainState, prog: ManyProgress, params_now) -> None:
    """After an epoch: the checkpoint, then config.json (its ``chosen``), then the epoch's metrics lines."""
    best = stack_trees([prog.best_params[k] if prog.best_params[k] is not None else params_now[k]
                        for k in range(prog.k)])
    save_checkpoint(workdir / CHECKPOINT_FILE, state, prog.to_extra(), best_params=best)
    write_config(workdir, config, normalizers)
    path = workdir / METRICS_FILE
    with open(path, "a") as fh:
        fh.write(_metrics_lines(prog.histories, {prog.epoch}))


def record_choice(workdir, k: int, chosen_by: dict) -> None:
    """Make model ``k`` the chosen one of the K-models run in ``workdir`` (what
    :func:`load_many` and ``ManyRun.pick()`` give from then on), keeping
    ``chosen_by`` (how it was chosen, JSON) beside it in config.json, which is
    replaced whole. Training the run further (a resume) chooses by validation
    loss again."""
    workdir = Path(workdir)
    config = read_config(workdir)
    if not is_many(config):
        raise RunError(f"{workdir}: a run of one model, nothing to choose from; train several with --seeds or "
                       "--lr-grid")
    n = len(config["normalizers"])
    if not 0 <= int(k) < n:
        raise RunError(f"model {k}: {workdir} holds models 0..{n - 1}; give one of them")
    config = dict(config, chosen=int(k), chosen_by=chosen_by)
    atomic_write(workdir / CONFIG_FILE, json.dumps(config, indent=2, allow_nan=False) + "\n")


def sync_many_metrics(workdir: Path, prog: ManyProgress) -> None:
    """metrics.jsonl holds exactly the checkpoint's epochs (a kill may have left more or fewer lines)."""
    atomic_write(workdir / METRICS_FILE, _metrics_lines(prog.histories))


# ------------------------------------------------------------------ reading
def is_many(config: dict) -> bool:
    return config.get("kind") == "many"


class ManyRun(NamedTuple):
    model: Autoencoder
    params: Any  # stacked [K, ...], each model's best epoch (its last without validation)
    state: TrainState  # stacked last states
    normalizers: list[Normalizer]
    chosen: int  # the index of the best validation loss (training loss without validation)
    config: dict
    extra: dict  # the loop's progress (histories, errors, ...)

    @property
    def k(self) -> int:
        return len(self.normalizers)

    def pick(self, k: int | None = None) -> Run:
        """Model ``k`` (default: the chosen one) as a one-model :class:`Run`: its
        params, state, normaliser, and a config whose ``train``, ``optimizer``
        and ``normalizer`` are its own (``model_index``: k)."""
        k = self.chosen if k is None else int(k)
        if not 0 <= k < self.k:
            raise RunError(f"model {k}: the run holds models 0..{self.k - 1}; give one of them")
        one = lambda tree: jax.tree.map(lambda a: a[k], tree)  # noqa: E731
        cfg = self.config
        config = dict(cfg, train=cfg["train"][k], optimizer=cfg["optimizer"][k],
                      normalizer=self.normalizers[k].to_dict(), model_index=k)
        hist = (self.extra.get("histories") or [[]] * self.k)[k]
        extra = {"epoch": hist[-1]["epoch"] if hist else 0, "last_record": hist[-1] if hist else None}
        return Run(self.model, one(self.params), one(self.state), config, self.normalizers[k], extra)


def specs_of(config: dict, where) -> tuple[ModelSpec, list[TrainSpec]]:
    try:
        return ModelSpec.from_dict(config["model"]), [TrainSpec.from_dict(t) for t in config["train"]]
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{Path(where) / CONFIG_FILE}: invalid many-models config ({e}); restore the file or train "
                       "the run again") from None


def load_many(workdir) -> ManyRun:
    """Read a folder :func:`run_training_many` wrote: all K models stacked, and
    ``chosen``, the best one's index (``ManyRun.pick()`` gives it alone)."""
    workdir = Path(workdir)
    config = read_config(workdir)
    if not is_many(config):
        raise RunError(f"{workdir}: not a run of many models (no \"kind\": \"many\" in {CONFIG_FILE}); read it with "
                       "load_run")
    model_spec, specs = specs_of(config, workdir)
    model, b = build(model_spec), config["budget"]
    total = int(b.get("schedule_steps", b["epochs"] * b["steps_per_epoch"]))
    opts = [many_optimizer(s, total) for s in specs]
    template = jax.eval_shape(lambda: stack_trees([create_train_state(model, o, jax.random.PRNGKey(0)) for o in opts]))
    state, extra = load_checkpoint(workdir / CHECKPOINT_FILE, template)
    best = extra.pop("best_params", None)
    params = jax.tree.map(jnp.asarray, best if best is not None else state.params)
    normalizers = [Normalizer.from_dict(n) for n in config["normalizers"]]
    if "active" in extra:  # the checkpoint's progress decides (config.json's may lag a kill)
        prog = ManyProgress.from_extra(extra, params)
        chosen = prog.chosen()
        chosen = int(config.get("chosen") or 0) if chosen is None else chosen
        # a model without validation (or that never finished an epoch) is used as it stands: its last params
        n_val = (config.get("data") or {}).get("n_val")
        if not n_val:
            params = jax.tree.map(jnp.asarray, state.params)
    else:
        chosen = int(config["chosen"])
    if config.get("chosen_by") is not None:  # a choice made after training (record_choice) stands
        chosen = int(config["chosen"])
    return ManyRun(model, params, state, normalizers, chosen, config, extra)
