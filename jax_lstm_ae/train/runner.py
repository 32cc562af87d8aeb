"""The one training runner: split, normalisation, budget, optimiser,
checkpoints, resume, metrics and callbacks around :func:`train.fit.fit`.

    result = run_training(model_spec, train_spec, data)                # in memory
    result = run_training(model_spec, train_spec, data, workdir=RUN)   # a run folder, resumable
    result = resume_training(RUN, data, changes={"epochs": 40})        # continue it exactly

``jax-lstm-ae train``, the detectors and transformer of ``apps.detectors``,
the series pipeline and the quality benchmarks all train through here; the
research path (``make_train_step`` on a ``TrainState``) is what it runs.

With ``workdir``, config.json is written before the first step (the run is
resumable from then on) and, after every epoch, the checkpoint first, then
the epoch's line of metrics.jsonl: a kill between the two leaves an epoch the
log lacks, never one the checkpoint lacks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jax_lstm_ae.data import Dataset, Moments, Normalizer, count_empty, is_lazy, train_val_split
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.nn.spec import HeadKind, ModelSpec, SpecError, build
from jax_lstm_ae.train.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CONFIG_VERSION,
    RunError,
    append_metrics,
    atomic_write,
    build_optimizer,
    load_run,
    optimizer_config,
    read_config,
    save_run,
    sync_metrics,
)
from jax_lstm_ae.train.memory import check_train_memory
from jax_lstm_ae.train.fit import FitProgress, NonFiniteError, fit, fit_progress_from_extra
from jax_lstm_ae.train.noise import gaussian_noise, step_dropout
from jax_lstm_ae.train.spec import Normalize, OptimizerSpec, Schedule, TrainSpec
from jax_lstm_ae.train.step import TrainState


class TrainResult(NamedTuple):
    model: Autoencoder
    state: TrainState  # the last state (what a resume continues)
    params: Any  # the best validation epoch's params (the last ones without validation)
    normalizer: Normalizer
    train: Dataset  # normalised
    val: Dataset | None  # normalised, or None (val_fraction 0)
    history: list[dict]  # this call's epoch records
    config: dict  # config.json's content


def data_fingerprint(data: Dataset) -> dict:
    """Size and SHA-256 of the sequences and lengths: a resume refuses other data.

    A set read from a file on demand (``data.lazy``) is not read whole for
    this: its fingerprint is the file's shape, dtype, size and cut plus the
    SHA-256 of 64 evenly spaced blocks of 64 KiB (:meth:`LazyWindows.fingerprint`)."""
    if is_lazy(data):
        return data.x.fingerprint()
    h = hashlib.sha256()
    for a in (data.x, data.lengths):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return {"n": int(data.n), "steps": int(data.steps), "features": int(data.features), "sha256": h.hexdigest()}


def normalize_mode(model_spec: ModelSpec, train_spec: TrainSpec) -> str:
    """``auto``: none for the sigmoid head (binary data must stay in [0, 1]), else zscore."""
    mode = train_spec.normalize
    if mode is Normalize.AUTO:
        return "none" if model_spec.head.kind is HeadKind.SIGMOID else "zscore"
    if mode is Normalize.ZSCORE and model_spec.head.kind is HeadKind.SIGMOID:
        raise SpecError("train.normalize: zscore would move binary data out of [0, 1]; use none with the sigmoid head")
    return mode.value


def corruption(train_spec: TrainSpec):
    """The denoising corruption the spec asks for, or None."""
    if train_spec.input_noise:
        return gaussian_noise(train_spec.input_noise)
    return step_dropout(train_spec.step_dropout) if train_spec.step_dropout else None


def optimizer_of(train_spec: TrainSpec, total_steps: int) -> tuple[dict, Any]:
    """``(config, optimizer)`` for a budget of ``total_steps`` (cosine decays over all of them)."""
    o = train_spec.optimizer
    cfg = optimizer_config(o.learning_rate, clip_norm=o.clip_norm, weight_decay=o.weight_decay,
                           warmup_steps=o.warmup_steps,
                           decay_steps=total_steps if o.schedule is Schedule.COSINE else None)
    return cfg, build_optimizer(cfg)


def runtime_of(model_spec: ModelSpec, mesh) -> dict:
    """How the run is computed, recorded when it starts (this starts JAX's backend)."""
    from jax_lstm_ae.backends import resolve_backend

    return {"backend": resolve_backend(model_spec.backend.value), "platform": jax.default_backend(),
            "devices": 1 if mesh is None else int(mesh.devices.size), "jax": jax.__version__}


def split_data(data: Dataset, train_spec: TrainSpec, model_spec: ModelSpec | None = None,
               normalizer: Normalizer | None = None) -> tuple[Normalizer, Dataset, Dataset | None]:
    """``(normalizer, train, val)``: the spec's random split (``val_fraction``,
    ``seed``), the normaliser fitted on the training part (unless given) and
    both parts normalised. What the runner trains on, for callers that score."""
    if data.n == 0:
        raise ValueError("the training set is empty; give at least one sequence")
    train, val = train_val_split(data, train_spec.val_fraction, seed=train_spec.seed)
    if normalizer is None:
        mode = normalize_mode(model_spec, train_spec) if model_spec is not None else (
            "zscore" if train_spec.normalize is Normalize.AUTO else train_spec.normalize.value)
        normalizer = fit_normalizer(train, mode)
    return normalizer, normalizer.apply(train), None if val is None else normalizer.apply(val)


def fit_normalizer(train: Dataset, mode: str) -> Normalizer:
    """``Normalizer.fit``; a set read from a file is read in chunks and, in a
    run of several processes, each process reads only its block of the rows
    and the statistics are merged (the same normaliser in every process)."""
    if mode == "none" or not is_lazy(train) or jax.process_count() == 1:
        return Normalizer.fit(train, mode)
    from jax.experimental import multihost_utils

    m = train.x.moments((jax.process_index(), jax.process_count()))
    packed = np.concatenate([[m.count], m.mean, m.m2, m.lo, m.hi]).astype(np.float64)
    f = m.mean.shape[0]
    allp = np.asarray(multihost_utils.process_allgather(packed))  # [P, 1 + 4F], in process order
    merged = Moments.of(np.zeros((0, f)), np.zeros(0), f)
    for row in allp:
        merged = merged.merge(Moments(float(row[0]), *(row[1 + i * f:1 + (i + 1) * f] for i in range(4))))
    return Normalizer.from_moments(merged, mode)


def _epoch_saver(workdir: Path | None, config: dict, normalizer, callback):
    """fit's on_epoch_end: checkpoint, then metrics, then the caller's callback."""

    def on_epoch_end(state, prog: FitProgress):
        rec = prog.last_record
        if not all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(state.params)):
            raise NonFiniteError(
                f"training stopped after epoch {prog.epoch}: the parameters are not finite (the loss was "
                f"{rec['loss']}); lower the learning rate or check the data for extreme values",
                state, [], int(state.step))
        bad = {k: v for k, v in rec.items() if isinstance(v, float) and not np.isfinite(v)}
        if bad:  # fit stops on a non-finite training loss; a validation loss can still overflow
            name, value = next(iter(bad.items()))
            raise NonFiniteError(
                f"training stopped after epoch {prog.epoch} (step {rec['step']}): the {name.replace('_', ' ')} is "
                f"{value}; lower the learning rate or check the data for extreme values", state, [], int(state.step))
        if workdir is not None:
            save_run(workdir, state, config, normalizer, extra=prog.to_dict(), best_params=prog.best_params)
            append_metrics(workdir, rec)
        if callback is not None:
            callback(state, prog)

    return on_epoch_end


def _fit(model, optimizer, train, val, config, normalizer, *, batch, epochs, train_spec, workdir, progress, mesh,
         step_kwargs, callback, state, resume, max_steps):
    kw = dict(step_kwargs or {})
    corrupt = corruption(train_spec)
    if corrupt is not None:
        kw["corrupt"] = corrupt
    return fit(model, optimizer, train, val, epochs=epochs, batch_size=batch, seed=train_spec.seed,
               patience=train_spec.patience, progress=progress, state=state, resume=resume,
               on_epoch_end=_epoch_saver(workdir, config, normalizer, callback), restore_best=False,
               max_steps=max_steps, mesh=mesh, step_kwargs=kw, patience_after=train_spec.floor_steps)


def _check_memory(model, optimizer, model_spec: ModelSpec, batch: int, train: Dataset, mesh) -> None:
    """Refuse a step too big for the device's memory, with the figures and
    what to change (``train.memory``), instead of an allocator error later."""
    outputs = model_spec.encoder.vocab_size or model_spec.features
    check_train_memory(model, optimizer, batch, train.steps, outputs, remat=model_spec.cell.remat, mesh=mesh)


def _result(model, state, history, normalizer, train, val, config, best) -> TrainResult:
    """``best``: the best validation epoch's params (without validation, fit
    tracks the training loss: the last params are returned then)."""
    params = state.params if best is None or val is None else jax.tree.map(jax.numpy.asarray, best)
    return TrainResult(model, state, params, normalizer, train, val, history, config)


def run_training(
    model_spec: ModelSpec, train_spec: TrainSpec, data: Dataset, *, val: Dataset | None = None, workdir=None,
    data_info: dict | None = None, progress=False, mesh=None, step_kwargs: dict | None = None,
    callback: Callable[[TrainState, FitProgress], None] | None = None, max_steps: int | None = None,
) -> TrainResult:
    """Train a new model on ``data`` (raw units; the runner splits and normalises).

    ``data`` may be read from a file on demand (``lazy_dataset(open_npy(...))``,
    ``data.lazy``): it is then split by index ranges, the normaliser is fitted
    in chunks (each process reading its block of rows in a multi-process run),
    the fingerprint samples the file, and batches read only their rows.

    Args:
      val: a validation set the caller chose (the best epoch and early
        stopping watch it); then ``data`` is all training data, nothing is
        split off, and the normaliser is fitted on ``data``.
      workdir: a folder to write the run into (config.json, checkpoint.msgpack,
        metrics.jsonl), resumable with :func:`resume_training`; None: in memory.
      data_info: where the data came from (kept in config.json's ``data``).
      progress: True writes a progress line to stderr; a stream writes there.
      mesh, step_kwargs: data parallelism (``make_train_step``'s options).
      callback: called with ``(state, FitProgress)`` after each epoch is saved.
      max_steps: stop after this many steps in total.
    """
    if data.features != model_spec.features and model_spec.encoder.vocab_size is None:
        raise SpecError(f"model.features: the data has F={data.features} features, the spec {model_spec.features}; "
                        f"build the spec with features={data.features}")
    given_val = val
    if val is None:
        normalizer, train, val = split_data(data, train_spec, model_spec)
    else:
        normalizer = fit_normalizer(data, normalize_mode(model_spec, train_spec))
        train, val = normalizer.apply(data), normalizer.apply(val)
    batch, spe, epochs = train_spec.budget(train.n)
    ocfg, optimizer = optimizer_of(train_spec, epochs * spe)
    model = build(model_spec)
    _check_memory(model, optimizer, model_spec, batch, train, mesh)  # before anything is allocated or written
    config = {
        "version": CONFIG_VERSION, "model": model_spec.to_dict(), "train": train_spec.to_dict(), "optimizer": ocfg,
        "budget": {"epochs": epochs, "batch_size": batch, "steps_per_epoch": spe},
        "data": {"source": "in memory", "n": data.n, "steps": data.steps, "features": data.features,
                 **(data_info or {}), "fingerprint": data_fingerprint(data),
                 "val_fingerprint": None if given_val is None else data_fingerprint(given_val), "n_train": train.n,
                 "n_val": 0 if val is None else val.n, "n_empty": count_empty(data)},
        "runtime": runtime_of(model_spec, mesh),
    }
    workdir = None if workdir is None else Path(workdir)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(dict(config, normalizer=normalizer.to_dict()), indent=2, allow_nan=False)
        atomic_write(workdir / CONFIG_FILE, text + "\n")  # resumable from here on
    best: list = [None]

    def keep_best(state, prog):
        best[0] = prog.best_params
        if callback is not None:
            callback(state, prog)

    state, history = _fit(model, optimizer, train, val, config, normalizer, batch=batch, epochs=epochs,
                          train_spec=train_spec, workdir=workdir, progress=progress, mesh=mesh,
                          step_kwargs=step_kwargs, callback=keep_best, state=None, resume=None, max_steps=max_steps)
    return _result(model, state, history, normalizer, train, val, config, best[0])


def read_specs(config: dict) -> tuple[ModelSpec, TrainSpec]:
    """The specs a config.json records (version 2, or version 1's sections)."""
    version = config.get("version", 1)
    if version == CONFIG_VERSION:
        return ModelSpec.from_dict(config["model"]), TrainSpec.from_dict(config["train"])
    if version == 1:
        return ModelSpec.from_v1(config["model"]), _train_spec_v1(config)
    raise SpecError(f"config version {version!r} is not one this library reads (1 or {CONFIG_VERSION}); "
                    "upgrade jax_lstm_ae")


def _train_spec_v1(config: dict) -> TrainSpec:
    """A version-1 run's training, with its budget resolved to whole epochs."""
    tr, o = config["train"], config["optimizer"]
    return TrainSpec(
        batch_size=tr["batch_size"], epochs=tr["epochs"], min_steps=0, patience=tr.get("patience"),
        val_fraction=tr["val_fraction"], normalize=tr.get("normalize", "zscore"), seed=tr["seed"],
        input_noise=tr.get("input_noise") or 0.0, step_dropout=tr.get("step_dropout") or 0.0,
        optimizer=OptimizerSpec(learning_rate=o["learning_rate"], warmup_steps=o.get("warmup_steps", 0),
                                schedule="cosine" if o.get("decay_steps") else "constant",
                                clip_norm=o.get("clip_norm") or 0.0, weight_decay=o.get("weight_decay", 0.0)))


def check_resume(workdir: Path, recorded: dict, data, val, changes: dict | None, allow_other_data: bool,
                 fingerprint: Callable, describe: Callable[[Any, Any], str]) -> dict:
    """The checks every resume makes before it trains: a validation set given as the run started, data whose
    ``fingerprint(data)`` equals the ``recorded`` one (else refused unless ``allow_other_data``; then the new one
    is recorded), and ``changes`` only to ``TrainSpec.RESUMABLE``. ``describe(recorded, now)`` names the two
    fingerprints in the refusal. Returns ``{key: new fingerprint}`` of the data allowed to differ."""
    if (val is None) != (recorded.get("val_fingerprint") is None):
        raise RunError(f"{workdir}: the run was started {'with' if val is None else 'without'} a validation set of "
                       "its own; resume it the same way")
    other = {}
    for what, given, key in (("data", data, "fingerprint"), ("validation data", val, "val_fingerprint")):
        if given is None:
            continue
        fp, want = fingerprint(given), recorded.get(key)
        if want is not None and fp != want:
            if not allow_other_data:
                raise RunError(f"{workdir}: the {what} differs from what the run started on ({describe(want, fp)}); "
                               "resume on the same data, or allow other data explicitly (--allow-other-data)")
            other[key] = recorded[key] = fp
    bad = sorted(set(changes or {}) - set(TrainSpec.RESUMABLE))
    if bad:
        raise SpecError(f"train.{bad[0]}: cannot change when resuming; change only "
                        f"{', '.join(TrainSpec.RESUMABLE)}, or train a new run")
    return other


def resume_training(
    workdir, data: Dataset, *, val: Dataset | None = None, changes: dict | None = None,
    allow_other_data: bool = False, progress=False,
    mesh=None, step_kwargs: dict | None = None, callback=None, max_steps: int | None = None,
) -> TrainResult:
    """Continue the run in ``workdir`` on the same ``data`` from its last
    checkpoint (or from its start, if it stopped before its first epoch), to
    the same bits the uninterrupted run reaches.

    ``changes``: new values of the fields a resume may change
    (``TrainSpec.RESUMABLE``), honoured and recorded under ``resumed``.
    Data whose fingerprint differs from the recorded one is refused unless
    ``allow_other_data``."""
    workdir = Path(workdir)
    config = read_config(workdir)
    if config.get("kind") == "many":
        raise RunError(f"{workdir}: a run of many models; resume it with resume_training_many (train.many)")
    try:
        model_spec, train_spec = read_specs(config)
    except (KeyError, TypeError, SpecError) as e:
        raise RunError(f"{workdir / CONFIG_FILE}: {e}; restore the file or train the run again") from None
    recorded = config.get("data") or {}
    other = check_resume(workdir, recorded, data, val, changes, allow_other_data, data_fingerprint,
                         lambda want, fp: f"{want['n']} sequences, sha256 {want['sha256'][:12]}...; now {fp['n']}, "
                                          f"{fp['sha256'][:12]}...")
    state = prog = None
    extra: dict = {}
    if (workdir / CHECKPOINT_FILE).exists():
        run = load_run(workdir)
        state, extra = run.state, run.extra
        prog = fit_progress_from_extra(extra)
    sync_metrics(workdir, extra)  # exactly the checkpoint's epochs: a kill may have left one more line, or one less
    try:
        normalizer = Normalizer.from_dict(config["normalizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{workdir / CONFIG_FILE}: invalid normalizer section ({e}); train the run again") from None
    done = int(extra.get("epoch", 0))
    real = {k: v for k, v in (changes or {}).items() if getattr(train_spec, k) != v}
    if real:
        train_spec = train_spec.replace(**real)
        config["train"] = train_spec.to_dict()
    if real or other:
        config.setdefault("resumed", []).append({"at_epoch": done, **real, **other})
    if val is None:
        _, train, val = split_data(data, train_spec, model_spec, normalizer)
    else:
        train, val = normalizer.apply(data), normalizer.apply(val)
    batch, spe, epochs = train_spec.budget(train.n)
    if "epochs" not in real and "min_steps" not in real:
        epochs = int(config.get("budget", {}).get("epochs", train_spec.budget(train.n)[2]))  # as it started
    config["budget"] = {"epochs": epochs, "batch_size": batch, "steps_per_epoch": spe}
    optimizer = build_optimizer(config["optimizer"])
    model = build(model_spec)
    best: list = [extra.get("best_params")]

    def keep_best(st, p):
        best[0] = p.best_params
        if callback is not None:
            callback(st, p)

    history: list[dict] = []
    # a run that early stopping ended stays ended, unless a larger patience was given
    stopped_early = prog is not None and train_spec.patience is not None and prog.bad_epochs >= train_spec.patience
    if done < epochs and not stopped_early:
        _check_memory(model, optimizer, model_spec, batch, train, mesh)
        state, history = _fit(model, optimizer, train, val, config, normalizer, batch=batch, epochs=epochs,
                              train_spec=train_spec, workdir=workdir, progress=progress, mesh=mesh,
                              step_kwargs=step_kwargs, callback=keep_best, state=state, resume=prog,
                              max_steps=max_steps)
    return _result(model, state, history, normalizer, train, val, config, best[0])
