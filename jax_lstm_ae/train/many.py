"""Many models as one program: K autoencoders of one shape trained together.

    specs = [train_spec.replace(seed=s) for s in range(8)]                 # seeds
    specs = [train_spec.replace(optimizer=o) for o in grid]                # a learning-rate grid
    result = run_training_many(model_spec, specs, data)                    # or data=[K datasets]
    z = encode_many(result.model, result.params, x, lengths)               # z[K, B, E]
    params = result.pick()                                                 # the best model's params
    run_training_many(model_spec, specs, data, workdir=RUN)                # a run folder, resumable
    resume_training_many(RUN, data, changes={"epochs": 40})                # continue all K exactly
    run = load_many(RUN); one = run.pick()                                 # all K; the chosen one as a Run

Model k equals ``run_training(model_spec, specs[k], data[k])`` to float
tolerance (same split, normaliser, initial parameters, ``(seed, epoch)``
batch order, best validation epoch, early stopping). The specs may differ in
``seed``, ``patience``, ``learning_rate``, ``clip_norm``, ``weight_decay`` and
the amount of ``input_noise`` or ``step_dropout`` (one kind, 0 for a clean model): traced values (the
optimiser's in its state, ``optax.inject_hyperparams``), so one compiled step
serves every model. What fixes shapes or the batch schedule must agree
(``SHARED``). A model whose loss turns non-finite stops (``errors[k]``); the
others go on.

``strategy`` (one step, ``train_step_fn``, run K ways): ``vmap`` over stacked
states and batches; ``map`` (``lax.map``: one model after the other inside one
program); ``loop`` (the single-model jitted step called K times). ``auto``:
``map`` on CPU, where XLA runs K small recurrent GEMMs faster than one batched
GEMM and a loop pays a dispatch per model (``bench/many.py``), ``vmap`` on GPU
and TPU. ``mesh=`` (e.g. ``use_all_cores()``: one CPU device per core) splits
the K models of ``vmap`` and ``map`` over its devices. Memory: K states and
the data; ``vmap`` also holds K steps' activations at once.

``workdir``: a run folder (``train.many_run``): config.json (the model spec,
the K train specs and optimisers, normalisers, ``chosen``: the best index),
checkpoint.msgpack (stacked last states, stacked best params, the loop's
progress) and metrics.jsonl (a line per model and epoch), written before the
first step and after every epoch as ``run_training`` does;
:func:`resume_training_many` continues it to what the uninterrupted run
reaches, :func:`load_many` reads it (all K, and the chosen one).
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from jax_lstm_ae.data import Dataset, Normalizer, batches
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.nn.spec import ModelSpec, SpecError, build
from jax_lstm_ae.train.checkpoint import CHECKPOINT_FILE, RunError, read_config
from jax_lstm_ae.train.fit import SYNC_EVERY, NonFiniteError
from jax_lstm_ae.train.many_run import (ManyProgress, ManyRun, is_many, load_many, record_choice, save_epoch, specs_of,
                                        sync_many_metrics, write_config)
from jax_lstm_ae.train.many_steps import (Models, many_optimizer, many_steps, models_mesh, noise_of, run_noise_kind,
                                          stack_trees, unit_schedule)
from jax_lstm_ae.train.memory import check_train_memory
from jax_lstm_ae.train.runner import (CONFIG_VERSION, check_resume, data_fingerprint, normalize_mode, optimizer_of,
                                     runtime_of, split_data)
from jax_lstm_ae.train.spec import TrainSpec
from jax_lstm_ae.train.step import TrainState, create_train_state

__all__ = ["ManyResult", "ManyRun", "encode_many", "load_many", "record_choice", "resume_training_many",
           "run_training_many", "step_errors_many"]

STRATEGIES = ("auto", "vmap", "map", "loop")
# What fixes shapes or the batch schedule: the K train specs must agree on it.
SHARED = ("batch_size", "epochs", "min_steps", "val_fraction", "normalize", "optimizer.schedule",
          "optimizer.warmup_steps")


class ManyResult(NamedTuple):
    model: Autoencoder
    state: TrainState  # the K last states, stacked on a leading axis K
    params: Any  # the K models' params (each its best validation epoch's), stacked [K, ...]
    normalizers: list[Normalizer]
    histories: list[list[dict]]  # per model, its epoch records (as run_training's history)
    best_losses: list[float]  # per model, its best validation loss (training loss without validation)
    best: int  # the index of the lowest best loss among the models that did not fail
    errors: list[str | None]  # per model, why it stopped early on a non-finite value, or None
    strategy: str  # how the K models ran: vmap, map or loop
    config: dict

    @property
    def k(self) -> int:
        return len(self.normalizers)

    def pick(self, k: int | None = None) -> Any:
        """Model ``k``'s params (default: the best one's), unstacked."""
        k = self.best if k is None else k
        return jax.tree.map(lambda a: a[k], self.params)

    def encode(self, x, lengths=None) -> jax.Array:
        """z[K, B, E] of raw ``x[B, T, F]``, each model reading it through its own normaliser."""
        xs = np.stack([n.apply(x) for n in self.normalizers])
        if lengths is not None:  # padding stays zero after normalising, as a Dataset's does
            valid = np.arange(xs.shape[2])[None, :] < np.asarray(lengths)[:, None]
            xs = np.where(valid[None, :, :, None], xs, 0.0).astype(np.float32)
        return encode_many(self.model, self.params, xs, lengths)


def resolve_strategy(strategy: str, platform: str | None = None) -> str:
    """``auto`` -> ``map`` on CPU, ``vmap`` elsewhere (this starts JAX's backend)."""
    if strategy not in STRATEGIES:
        raise SpecError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy != "auto":
        return strategy
    return "map" if (platform or jax.default_backend()) == "cpu" else "vmap"


def check_specs(train_specs: Sequence[TrainSpec]) -> None:
    """Refuse K specs that do not share shapes and the batch schedule, naming the field."""
    if not train_specs or not all(isinstance(s, TrainSpec) for s in train_specs):
        raise SpecError("train_specs: give a non-empty list of TrainSpec, one per model")
    first = train_specs[0]
    for k, spec in enumerate(train_specs[1:], 1):
        for name in SHARED:
            a, b = (functools.reduce(getattr, name.split("."), t) for t in (first, spec))
            if a != b:
                raise SpecError(f"train_specs[{k}].{name}: {getattr(b, 'value', b)!r} differs from train_specs[0]'s "
                                f"{getattr(a, 'value', a)!r}; the models train in lockstep, so give every spec the "
                                f"same {name}")
    run_kind = run_noise_kind(train_specs)
    for k, spec in enumerate(train_specs):
        kind = noise_of(spec)[0]
        if kind not in ("none", run_kind):
            raise SpecError(f"train_specs[{k}].input_noise: the corruption is {kind}, another model's "
                            f"{run_kind}; give every spec one kind (input_noise or step_dropout, amounts that "
                            "may differ, 0 for a clean model), or none")


# ------------------------------------------------------------------ the runner
def _as_list(data, k: int, what: str) -> list:
    if data is None or isinstance(data, Dataset):
        return [data] * k
    data = list(data)
    if len(data) != k or not all(isinstance(d, Dataset) for d in data):
        raise SpecError(f"{what}: give one Dataset for all models or a list of {k} Datasets, one per train spec")
    return data


def _prepare(model_spec: ModelSpec, specs: list[TrainSpec], data, val) -> tuple[list, list, tuple]:
    """``(datasets, (normalizer, train, val) per model, (batch, steps_per_epoch, epochs))``."""
    k_models = len(specs)
    datas, vals = _as_list(data, k_models, "data"), _as_list(val, k_models, "val")
    shapes = {(d.steps, d.features) for d in datas}
    if len(shapes) > 1:
        raise SpecError(f"data: the {k_models} datasets have shapes (T, F) {sorted(shapes)}; give datasets of one "
                        "shape (pad or cut them to one length)")
    if datas[0].features != model_spec.features and model_spec.encoder.vocab_size is None:
        raise SpecError(f"model.features: the data has F={datas[0].features} features, the spec "
                        f"{model_spec.features}; build the spec with features={datas[0].features}")
    parts = []
    for spec, d, v in zip(specs, datas, vals):
        if v is None:
            parts.append(split_data(d, spec, model_spec))
        else:
            norm = Normalizer.fit(d, normalize_mode(model_spec, spec))
            parts.append((norm, norm.apply(d), norm.apply(v)))
    if len({0 if p[2] is None else p[2].n for p in parts}) > 1:
        raise SpecError("val: the models' validation sets differ in size; give validation sets of one size N")
    budgets = {spec.budget(p[1].n) for spec, p in zip(specs, parts)}
    if len(budgets) > 1:
        raise SpecError(f"data: the models' training sets give different budgets (batch, steps per epoch, epochs) "
                        f"{sorted(budgets)}; give datasets of one size N")
    return datas, parts, budgets.pop()


def run_training_many(
    model_spec: ModelSpec, train_specs: Sequence[TrainSpec], data: Dataset | Sequence[Dataset], *,
    val: Dataset | Sequence[Dataset] | None = None, workdir=None, strategy: str = "auto", progress=False,
    mesh=None, data_info: dict | None = None, callback: Callable[[ManyProgress], None] | None = None,
) -> ManyResult:
    """Train K = ``len(train_specs)`` models of ``model_spec`` in one program.

    ``data``: one Dataset for every model, or K Datasets of one shape (T, F),
    one detector per series; ``val`` likewise (then nothing is split off).
    Each model is split, normalised and trained as :func:`run_training` does
    with its spec. ``strategy``: ``auto``, ``vmap``, ``map`` or ``loop``.
    ``mesh`` (e.g. ``use_all_cores()``): ``vmap`` and ``map`` split the K
    models over its devices (as many as divide K); ``loop`` ignores it.
    ``workdir``: a run folder (``train.many_run``), written before the first
    step and after every epoch, resumable with :func:`resume_training_many`.
    ``data_info``: where the data came from (kept in config.json's ``data``).
    ``callback(progress)``: after each epoch is saved."""
    specs = list(train_specs)
    check_specs(specs)
    strategy = resolve_strategy(strategy)
    datas, parts, (batch, spe, epochs) = _prepare(model_spec, specs, data, val)
    vals = None if val is None else _as_list(val, len(specs), "val")
    one = isinstance(data, Dataset)
    given, given_val = (datas[:1], None if vals is None else vals[:1]) if one else (datas, vals)
    config = {
        "version": CONFIG_VERSION, "kind": "many", "model": model_spec.to_dict(),
        "train": [s.to_dict() for s in specs], "optimizer": [optimizer_of(s, epochs * spe)[0] for s in specs],
        "budget": {"epochs": epochs, "batch_size": batch, "steps_per_epoch": spe, "schedule_steps": epochs * spe},
        "data": {"source": "in memory", "n": given[0].n, "steps": given[0].steps, "features": given[0].features,
                 **(data_info or {}), "fingerprint": [data_fingerprint(d) for d in given],
                 "val_fingerprint": None if given_val is None else [data_fingerprint(v) for v in given_val],
                 "n_train": parts[0][1].n, "n_val": 0 if parts[0][2] is None else parts[0][2].n},
        "runtime": dict(runtime_of(model_spec, None), strategy=strategy), "chosen": None, "best_losses": None,
    }
    if workdir is not None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        write_config(workdir, config, [p[0] for p in parts])  # resumable from here on
    return _train(model_spec, specs, parts, (batch, spe, epochs), config, strategy, mesh, workdir, progress,
                  callback, None, None)


def resume_training_many(
    workdir, data: Dataset | Sequence[Dataset], *, val: Dataset | Sequence[Dataset] | None = None,
    changes: dict | None = None, allow_other_data: bool = False, strategy: str | None = None, progress=False,
    mesh=None, callback: Callable[[ManyProgress], None] | None = None,
) -> ManyResult:
    """Continue the K-models run in ``workdir`` on the same ``data`` from its
    last checkpoint (or its start) to what the uninterrupted run reaches.

    ``changes``: new values of ``TrainSpec.RESUMABLE`` (epochs, min_steps,
    patience), given to every model and recorded under ``resumed``; a model
    that early stopping ended trains on only if its patience grows. Data
    whose fingerprints differ is refused unless ``allow_other_data``.
    ``strategy``: None runs the K models as the run recorded."""
    workdir = Path(workdir)
    config = read_config(workdir)
    if not is_many(config):
        raise RunError(f"{workdir}: a run of one model; resume it with resume_training")
    model_spec, specs = specs_of(config, workdir)
    config.pop("chosen_by", None)  # training on: the choice goes back to the validation loss
    k_models = len(specs)
    recorded = config["data"]
    other = check_resume(
        workdir, recorded, data, val, changes, allow_other_data,
        lambda given: [data_fingerprint(d) for d in ([given] if isinstance(given, Dataset) else list(given))],
        lambda want, fp: f"{len(want)} dataset(s), sha256 {want[0]['sha256'][:12]}...")
    real = {k: v for k, v in (changes or {}).items() if getattr(specs[0], k) != v}
    if real:
        specs = [s.replace(**real) for s in specs]
        config["train"] = [s.to_dict() for s in specs]
    state = prog = None
    if (workdir / CHECKPOINT_FILE).exists():
        run = load_many(workdir)
        state, prog = run.state, ManyProgress.from_extra(run.extra, run.params)
    if real or other:
        config.setdefault("resumed", []).append({"at_epoch": 0 if prog is None else prog.epoch, **real, **other})
    normalizers = [Normalizer.from_dict(n) for n in config["normalizers"]]
    datas, vals = _as_list(data, k_models, "data"), _as_list(val, k_models, "val")
    parts = []
    for spec, norm, d, v in zip(specs, normalizers, datas, vals):
        parts.append((norm, *split_data(d, spec, model_spec, norm)[1:]) if v is None
                     else (norm, norm.apply(d), norm.apply(v)))
    batch, spe, epochs = specs[0].budget(parts[0][1].n)
    if "epochs" not in real and "min_steps" not in real:
        epochs = int(config["budget"]["epochs"])  # as it started
    config["budget"] = dict(config["budget"], epochs=epochs, batch_size=batch, steps_per_epoch=spe)
    if prog is not None:
        sync_many_metrics(workdir, prog)
    strategy = resolve_strategy(strategy or config["runtime"].get("strategy", "auto"))
    return _train(model_spec, specs, parts, (batch, spe, epochs), config, strategy, mesh, workdir, progress,
                  callback, state, prog)


def _train(model_spec, specs, parts, budget, config, strategy, mesh, workdir, progress, callback, state,
           prog: ManyProgress | None) -> ManyResult:
    """The loop over epochs of the K models, from ``prog`` (None: a new run)."""
    k_models, (batch, spe, epochs) = len(specs), budget
    total = int(config["budget"]["schedule_steps"])  # the schedule keeps the length it started with
    model = build(model_spec)
    optimizers = [many_optimizer(s, total) for s in specs]
    check_train_memory(model, optimizers[0], batch * (k_models if strategy == "vmap" else 1), parts[0][1].steps,
                       model_spec.encoder.vocab_size or model_spec.features, remat=model_spec.cell.remat)
    mesh = None if strategy == "loop" else models_mesh(mesh, k_models)
    config["runtime"] = dict(config["runtime"], strategy=strategy, devices=1 if mesh is None else int(mesh.devices.size))
    steps = many_steps(model, unit_schedule(specs[0], total), run_noise_kind(specs), strategy, mesh)
    if state is None:
        states = [create_train_state(model, o, jax.random.PRNGKey(s.seed)) for s, o in zip(specs, optimizers)]
    else:
        states = [jax.tree.map(lambda a, k=k: a[k], state) for k in range(k_models)]
    prog = ManyProgress(k_models) if prog is None else prog
    prog.reactivate(specs)
    models = Models(strategy, steps, states, [noise_of(s)[1] for s in specs], mesh)
    models.stop(prog.active)
    normalizers = [p[0] for p in parts]
    stream = sys.stderr if progress is True else (progress or None)
    active, errors, step = prog.active, prog.errors, prog.step
    for epoch in range(prog.epoch, epochs):
        if not any(active):
            break
        t0, losses, pending = time.perf_counter(), [[] for _ in specs], []
        live = [k for k in range(k_models) if active[k]]

        def read(pending, epoch=epoch):
            for j, (which, loss, finite) in enumerate(jax.device_get(pending)):
                for i, k in enumerate(which):
                    if not active[k] or errors[k] is not None:
                        continue
                    if not bool(finite[i]):
                        errors[k] = (f"model {k} stopped at step {step - len(pending) + j + 1} (epoch {epoch + 1}): "
                                     f"the loss or a gradient is not finite (loss={float(loss[i])}); lower its "
                                     "learning rate")
                    else:
                        losses[k].append(float(loss[i]))
            pending.clear()

        for group in zip(*(batches(p[1], batch, (s.seed, epoch), shuffle=True, drop_last=True)
                           for s, p in zip(specs, parts))):
            ts = time.perf_counter()
            pending.append(models.step(group, live))
            step += 1
            if prog.compile_s is None:
                jax.block_until_ready(pending[-1])
                prog.compile_s = time.perf_counter() - ts
            if len(pending) >= SYNC_EVERY:
                read(pending)
        read(pending)
        train_s = time.perf_counter() - t0
        params_now = models.params()
        val_losses = models.evaluate([p[2] for p in parts], batch, live)
        for k in live:
            val_loss = val_losses.get(k)
            if errors[k] is None and val_loss is not None and not np.isfinite(val_loss):
                errors[k] = f"model {k} stopped after epoch {epoch + 1}: the val loss is {val_loss}"
            if errors[k] is not None:
                active[k] = False
                continue
            train_loss = float(np.mean(losses[k]))
            watched = val_loss if val_loss is not None else train_loss
            if watched < prog.best_loss[k]:
                prog.best_loss[k], prog.best_epoch[k], prog.bad[k] = watched, epoch + 1, 0
                prog.best_params[k] = params_now[k]
            else:  # as fit: epochs without improvement count only after the floor of steps (TrainSpec.floor_steps)
                prog.bad[k] = 0 if step < specs[k].floor_steps else prog.bad[k] + 1
            prog.histories[k].append({"epoch": epoch + 1, "step": step, "loss": train_loss, "val_loss": val_loss,
                                      "seq_per_s": batch * spe / max(train_s, 1e-9),
                                      "time_s": time.perf_counter() - t0,
                                      "compile_s": prog.compile_s if epoch == 0 else 0.0})
            if specs[k].patience is not None and prog.bad[k] >= specs[k].patience:
                active[k] = False
        models.stop(active)
        prog.epoch, prog.step = epoch + 1, step
        config.update(chosen=prog.chosen(), best_losses=prog.to_extra()["best_loss"])
        if workdir is not None:
            save_epoch(workdir, config, normalizers, models.state(), prog, params_now)
        if stream is not None:
            done = [h[-1]["val_loss"] if h[-1]["val_loss"] is not None else h[-1]["loss"]
                    for h in prog.histories if h and h[-1]["epoch"] == epoch + 1]
            stream.write(f"epoch {epoch + 1}/{epochs} step {step} models {len(done)}/{k_models} best "
                         f"{min(done, default=float('nan')):.5f} {time.perf_counter() - t0:.1f}s\n")
            stream.flush()
        if callback is not None:
            callback(prog)
    state, last = models.state(), models.params()
    params = stack_trees([prog.best_params[k] if prog.best_params[k] is not None and parts[k][2] is not None
                          else last[k] for k in range(k_models)])
    best = prog.chosen()
    if best is None:
        raise NonFiniteError("every model stopped on a non-finite value: " + "; ".join(e for e in errors if e),
                             state, [], step)
    config.update(chosen=best, best_losses=prog.to_extra()["best_loss"])
    if workdir is not None:
        write_config(workdir, config, normalizers)
    return ManyResult(model, state, params, normalizers, prog.histories, prog.best_loss, best, errors, strategy,
                      config)


# ------------------------------------------------------------------ the K models at work
@functools.partial(jax.jit, static_argnums=(0, 1))
def _over_models(method: str, model: Autoencoder, params, x, lengths):
    in_x = 0 if x.ndim == (3 if model.tokens else 4) else None  # [K, B, T, F]: one input per model
    return jax.vmap(lambda p, xi: getattr(model, method)(p, xi, lengths), in_axes=(0, in_x))(params, x)


def encode_many(model: Autoencoder, params, x, lengths=None) -> jax.Array:
    """z[K, B, E] of the K stacked models; ``x`` is [B, T, F] for all, or [K, B, T, F], one per model."""
    return _over_models("encode", model, params, x, lengths)


def step_errors_many(model: Autoencoder, params, x, lengths=None) -> jax.Array:
    """Per-step reconstruction errors [K, B, T] (inference mode) of the K stacked models; ``x`` as in encode_many."""
    return _over_models("step_errors", model, params, x, lengths)
