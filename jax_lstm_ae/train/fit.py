"""The fit loop: epochs of jitted train steps, validation, early stopping,
a progress line, metrics as JSON lines, and resumable progress.

    state, history = fit(model, optimizer, train, val, epochs=20, batch_size=32,
                         seed=0, patience=5, log_path="metrics.jsonl")

Batches of epoch k are shuffled by ``(seed, k)`` and the step counter lives in
the state, so a run restarted from a checkpoint (``state=``, ``progress=``)
sees exactly the batches the uninterrupted run would have seen and reaches
the same parameters.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any, Callable, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_lstm_ae.data import Dataset, batches
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.train.parallel import data_parallel
from jax_lstm_ae.train.spec import TrainSpec
from jax_lstm_ae.train.step import Batch, TrainState, create_train_state, make_eval_step, train_step_fn


class NonFiniteError(RuntimeError):
    """Training hit a NaN/inf loss or gradient. ``state`` is the last good
    state (the step leaves params untouched); ``history`` the epochs so far."""

    def __init__(self, message: str, state: TrainState, history: list[dict], step: int):
        super().__init__(message)
        self.state, self.history, self.step = state, history, step


class FitProgress(NamedTuple):
    """What fit needs, beyond the TrainState, to continue a run exactly."""

    epoch: int = 0  # epochs completed
    best_loss: float = float("inf")
    best_epoch: int = -1
    bad_epochs: int = 0  # epochs since the best, for early stopping
    best_params: Any = None  # host copy of the params at the best epoch
    last_record: dict | None = None  # the metrics of epoch ``epoch``, saved with the checkpoint

    def to_dict(self) -> dict:
        return {k: v for k, v in self._asdict().items() if k != "best_params"}


def evaluate(eval_step: Callable, params, data: Dataset, batch_size: int, *, defer: bool = False) -> float:
    """Mean per-step error over every valid step of ``data`` (inference mode).
    ``defer``: batches of rows not read yet (see :func:`~jax_lstm_ae.data.batches`)."""
    total = steps = 0.0
    for b in batches(data, batch_size, 0, shuffle=False, defer=defer):
        m = eval_step(params, b)
        n = float(m["n_steps"])
        total += float(m["loss"]) * n
        steps += n
    return total / steps


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Training drops the last partial batch (one shape, one compilation)."""
    return max(n_train // min(batch_size, n_train), 1)


def budget_epochs(n_train: int, batch_size: int, epochs: int | None = None, min_steps: int | None = None) -> int:
    """Epochs for a training budget, as :meth:`TrainSpec.budget` counts them:
    ``epochs`` (default ``DEFAULT_EPOCHS``) but at least ``min_steps`` steps
    (default ``DEFAULT_MIN_STEPS`` when ``epochs`` is not given, else 0), so
    small sets train long enough to learn and large ones keep their epochs."""
    spec = TrainSpec(batch_size=max(int(batch_size), 1), epochs=epochs, min_steps=min_steps)
    return spec.budget(max(int(n_train), 1))[2]


class _Progress:
    """Progress on ``stream``: a few lines a run, not one an epoch. The first
    and the last epoch get a line, and one more whenever ``LINE_EVERY_S``
    seconds have passed since the last; on a terminal a bar is redrawn in
    place in between."""

    LINE_EVERY_S = 30.0

    def __init__(self, stream: TextIO | None, epochs: int, spe: int):
        self.stream, self.epochs, self.spe = stream, epochs, spe
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.last = 0.0
        self.last_line = None  # when the last permanent line was written

    def step(self, epoch: int, i: int, loss: float, seq_s: float) -> None:
        if not self.tty or time.perf_counter() - self.last < 0.2:
            return
        self.last = time.perf_counter()
        bar = "#" * int(20 * i / self.spe)
        self.stream.write(
            f"\repoch {epoch + 1}/{self.epochs} [{bar:<20}] step {i}/{self.spe} loss {loss:.5f} {seq_s:,.0f} seq/s   "
        )
        self.stream.flush()

    def epoch(self, rec: dict, *, last: bool = False) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        due = self.last_line is None or last or rec["epoch"] >= self.epochs or now - self.last_line >= self.LINE_EVERY_S
        val = f" val {rec['val_loss']:.5f}" if rec.get("val_loss") is not None else ""
        line = (
            f"epoch {rec['epoch']}/{self.epochs} step {rec['step']} loss {rec['loss']:.5f}{val} "
            f"{rec['seq_per_s']:,.0f} seq/s {rec['time_s']:.1f}s"
        )
        if due:
            self.last_line = now
            self.stream.write(("\r" + line + " " * 20 + "\n") if self.tty else line + "\n")
        elif self.tty:
            self.stream.write("\r" + line + " " * 20)
        self.stream.flush()


def guarded_step(step_fn: Callable) -> Callable:
    """``((state, ok), batch) -> ((state, ok), metrics)``: the step, applied only
    while ``ok`` (no non-finite step so far). After a non-finite loss or
    gradient every later call leaves the state as it was, so the host can
    read the metrics every few steps and still stop with the state of the
    last good step."""

    def guarded(carry, batch):
        state, ok = carry
        new, metrics = step_fn(state, batch)
        apply = ok & metrics["finite"]
        state = jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, state)
        return (state, apply), metrics

    return guarded


# One jitted step per (model, optimizer, options) value and process: a second
# fit of the same model (a resume, a test) reuses the compiled step.
@functools.lru_cache(maxsize=16)
def _guarded_train_step(model: Autoencoder, optimizer: optax.GradientTransformation, mesh=None,
                        fsdp_min_size: int | None = None, global_batch: bool = False, corrupt=None) -> Callable:
    step = guarded_step(train_step_fn(model, optimizer, corrupt=corrupt, mesh=mesh))
    if mesh is None:
        return jax.jit(step, donate_argnums=(0,))
    return data_parallel(step, mesh, fsdp_min_size=fsdp_min_size, global_batch=global_batch)


# How many train steps run between two reads of their losses on the host.
SYNC_EVERY = 32


@functools.lru_cache(maxsize=16)
def _default_eval_step(model: Autoencoder) -> Callable:
    return make_eval_step(model)


def fit(
    model: Autoencoder,
    optimizer: optax.GradientTransformation,
    train: Dataset,
    val: Dataset | None = None,
    *,
    epochs: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    patience: int | None = None,
    min_delta: float = 0.0,
    log_path=None,
    progress: bool | TextIO = True,
    state: TrainState | None = None,
    resume: FitProgress | dict | None = None,
    on_epoch_end: Callable[[TrainState, FitProgress], None] | None = None,
    restore_best: bool = True,
    max_steps: int | None = None,
    train_step: Callable | None = None,
    eval_step: Callable | None = None,
    mesh=None,
    step_kwargs: dict | None = None,
    min_steps: int | None = None,
    patience_after: int = 0,
) -> tuple[TrainState, list[dict]]:
    """Train ``model`` on ``train`` (normalised already) for ``epochs`` epochs.

    Args:
      epochs, min_steps: the budget, :func:`budget_epochs`: by default 20
        epochs but at least 1,000 steps; ``epochs`` alone is exact;
        ``min_steps`` raises ``epochs`` until that many steps are done.
      state: continue from this state (e.g. ``load_run(...).state``); a fresh
        one from ``seed`` otherwise. ``resume``: the :class:`FitProgress` saved
        with it (``run.extra``), so early stopping and epoch count continue.
      patience: stop after this many epochs without a validation (or, without
        ``val``, training) loss better than the best by ``min_delta``; only
        epochs ending at step ``patience_after`` or later count, so a small set
        (one step an epoch, a noisy validation loss) still trains that long.
      log_path: append one JSON object per epoch (epoch, step, loss, val_loss,
        seq_per_s, time_s, lr-free metrics) to this file, after ``on_epoch_end``.
      progress: True writes a progress line to stderr; a stream writes there.
      on_epoch_end: called with ``(state, FitProgress)`` after every epoch,
        e.g. to save a checkpoint (``FitProgress.last_record`` is the epoch's
        metrics record). Do not keep ``state``: the next step donates it.
      restore_best: with validation, return the params of the best epoch.
      max_steps: stop after this many steps in total (state.step), mid-epoch
        if need be (a partial epoch is neither logged nor passed to on_epoch_end).
      train_step, eval_step: prebuilt jitted steps (``make_train_step``,
        ``make_eval_step``), so several fits share one compilation. A given
        ``train_step`` is checked on the host after every step; the steps fit
        builds itself are read every ``SYNC_EVERY`` steps and at the end of
        each epoch (no host round trip per step), and stop applying updates
        after a non-finite one.
      mesh, step_kwargs: the options of ``make_train_step`` (``mesh=`` for
        data parallelism, e.g. ``make_data_mesh()``; ``corrupt``,
        ``fsdp_min_size``, ``global_batch``); default: one device.

    Returns ``(state, history)``: history is the list of epoch records.
    Raises :class:`NonFiniteError` naming the step when a loss or gradient is
    not finite; ``on_epoch_end`` has by then saved the last good epoch.
    """
    n = train.n
    if n == 0:
        raise ValueError("the training set is empty")
    bs = min(int(batch_size), n)
    spe = steps_per_epoch(n, bs)
    epochs = budget_epochs(n, bs, epochs, min_steps)
    kw = dict(step_kwargs or {})
    unknown = set(kw) - {"corrupt", "fsdp_min_size", "global_batch"}
    if unknown:
        raise TypeError(f"fit: step_kwargs takes corrupt, fsdp_min_size and global_batch, got {sorted(unknown)}")
    guarded = train_step is None
    if guarded:
        train_step = _guarded_train_step(model, optimizer, mesh, kw.get("fsdp_min_size"),
                                         bool(kw.get("global_batch")), kw.get("corrupt"))
    defer_eval = eval_step is None  # fit's own sharded eval step places deferred rows (see ``defer`` below)
    if eval_step is None:  # with a mesh, validation batches are split over it too
        eval_step = _default_eval_step(model) if mesh is None else make_eval_step(
            model, mesh=mesh, global_batch=bool(kw.get("global_batch")))
    if state is None:
        state = create_train_state(model, optimizer, jax.random.PRNGKey(seed))
    # Several processes that each hold the global batch: rows read from a file are read
    # only where a process places them (data.lazy.RowsView), not whole in every process.
    defer = guarded and mesh is not None and bool(kw.get("global_batch")) and jax.process_count() > 1
    defer_eval = defer_eval and mesh is not None and bool(kw.get("global_batch")) and jax.process_count() > 1
    prog = FitProgress() if resume is None else (resume if isinstance(resume, FitProgress) else FitProgress(**resume))
    stream = sys.stderr if progress is True else (progress or None)
    bar = _Progress(stream, epochs, spe)
    log = open(log_path, "a") if log_path is not None else None
    history: list[dict] = []
    step = int(state.step)
    first_epoch, skip = divmod(step, spe)
    first_call = True
    carry = (state, jnp.asarray(True)) if guarded else state

    def unwrap(carry):
        return carry[0] if guarded else carry

    try:
        for epoch in range(first_epoch, epochs):
            if max_steps is not None and step >= max_steps:
                break
            t0 = time.perf_counter()
            losses, n_seq, compile_s, stopped_inside = [], 0, 0.0, False
            pending: list[dict] = []  # this epoch's metrics not yet read on the host

            def read(pending, epoch=epoch):
                """Read the pending metrics; stop at the first non-finite step."""
                done = step - len(pending)
                for j, m in enumerate(jax.device_get(pending)):
                    if not bool(m["finite"]):
                        bad = done + j + 1
                        raise NonFiniteError(
                            f"training stopped at step {bad} (epoch {epoch + 1}): the loss or a gradient is not "
                            f"finite (loss={float(m['loss'])}); params are those after step {bad - 1}; lower the "
                            "learning rate (--lr) or check the data for extreme values",
                            unwrap(carry), history, bad,
                        )
                    losses.append(float(m["loss"]))
                pending.clear()

            done = skip if epoch == first_epoch else 0  # batches trained on before the checkpoint: not read
            for i, batch in enumerate(batches(train, bs, (seed, epoch), shuffle=True, drop_last=True, skip=done,
                                              defer=defer), start=done):
                if max_steps is not None and step >= max_steps:
                    stopped_inside = True
                    break
                ts = time.perf_counter()
                carry, m = train_step(carry, Batch(batch.x, batch.lengths))
                step += 1
                n_seq += len(batch.lengths)
                pending.append(m)
                if first_call:
                    jax.block_until_ready(m)
                    compile_s = time.perf_counter() - ts  # first call compiles; keep it out of seq/s
                    first_call = False
                if not guarded or len(pending) >= SYNC_EVERY:
                    read(pending)
                    el = time.perf_counter() - t0 - compile_s
                    bar.step(epoch, i + 1, float(np.mean(losses)), n_seq / max(el, 1e-9))
            read(pending)
            state = unwrap(carry)
            if not losses or stopped_inside:
                break  # a partial epoch is not an epoch: no record, no on_epoch_end
            train_s = time.perf_counter() - t0 - compile_s
            train_loss = float(np.mean(losses))
            val_loss = evaluate(eval_step, state.params, val, bs, defer=defer_eval) if val is not None and val.n \
                else None
            elapsed = time.perf_counter() - t0
            watched = val_loss if val_loss is not None else train_loss
            better = watched < prog.best_loss - min_delta
            rec = {
                "epoch": epoch + 1,
                "step": step,
                "loss": train_loss,
                "val_loss": val_loss,
                "seq_per_s": n_seq / max(train_s, 1e-9),
                "time_s": elapsed,
                "compile_s": compile_s,
            }
            prog = FitProgress(
                epoch + 1,
                watched if better else prog.best_loss,
                epoch + 1 if better else prog.best_epoch,
                0 if better or step < patience_after else prog.bad_epochs + 1,
                jax.tree.map(lambda a: np.array(a, copy=True), state.params) if better else prog.best_params,
                rec,
            )
            history.append(rec)
            stopping = patience is not None and prog.bad_epochs >= patience
            bar.epoch(rec, last=stopping or (max_steps is not None and step >= max_steps))
            # The checkpoint first: a kill between the two then leaves an epoch
            # the log lacks (recoverable from the checkpoint), never one the
            # checkpoint lacks (which a resume would log twice).
            if on_epoch_end is not None:
                on_epoch_end(state, prog)
            if log is not None:
                log.write(json.dumps(rec, allow_nan=False) + "\n")
                log.flush()
            if stopping:
                if stream is not None:
                    stream.write(f"early stop: no improvement for {patience} epochs (best epoch {prog.best_epoch})\n")
                break
    finally:
        if log is not None:
            log.close()
    if restore_best and val is not None and prog.best_params is not None and prog.best_epoch != prog.epoch:
        state = state.replace(params=jax.tree.map(jax.numpy.asarray, prog.best_params))
    return state, history


def fit_progress_from_extra(extra: dict) -> FitProgress | None:
    """Rebuild FitProgress from a checkpoint's ``extra`` (``load_run(...).extra``)."""
    if not extra or "epoch" not in extra:
        return None
    return FitProgress(**{k: extra[k] for k in FitProgress._fields if k in extra})
