"""Run directories: a model rebuilt from its config, plus an atomic checkpoint.

    RUN_DIR/config.json        model, optimizer, training and data settings,
                               normalisation statistics (human-readable)
    RUN_DIR/checkpoint.msgpack TrainState (step, params, opt_state, rng) and
                               the fit loop's progress, flax msgpack

    save_run(run_dir, state, config, normalizer)
    run = load_run(run_dir)          # Run(model, params, state, config, normalizer, extra)
    z = run.model.encode(run.params, x, lengths)

Why flax msgpack and not orbax: the state is a few MB on one host, and one
file written to a temporary name, fsynced and ``os.replace``d is atomic on
POSIX — a crash leaves the previous checkpoint whole. Orbax adds async
writes, sharded arrays and retention policies that this does not need (a
multi-host run gathers params to host 0 before saving).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from flax import serialization

from jax_lstm_ae.data.datasets import Normalizer
from jax_lstm_ae.nn.decoders import DECODERS
from jax_lstm_ae.nn.encoder import POOLINGS, lstm_encoder
from jax_lstm_ae.nn.heads import linear, sigmoid
from jax_lstm_ae.nn.model import Autoencoder, make_autoencoder
from jax_lstm_ae.train.step import TrainState, create_train_state, make_optimizer

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.msgpack"
HEAD_NAMES = ("linear", "mae", "sigmoid")
CONFIG_VERSION = 1


class RunError(ValueError):
    """A run directory is missing, incomplete or does not match its config."""


class Run(NamedTuple):
    model: Autoencoder
    params: Any  # the params to use: the best epoch's when fit saved them, else state.params
    state: TrainState  # the exact training state, to resume from
    config: dict
    normalizer: Normalizer | None
    extra: dict  # the fit loop's progress (epoch, best loss, ...) when saved by fit


# ------------------------------------------------------------------ configs
def model_config(
    features: int,
    *,
    decoder: str = "repeat",
    embedding_dim: int = 16,
    hidden: tuple[int, ...] | list[int] = (32,),
    head: str = "linear",
    steps: int | None = None,
    bidirectional: bool = False,
    pooling: str = "last",
    teacher_prob: float = 0.0,
    reverse_target: bool | None = None,
    unroll: int = 1,
    init: str = "uniform",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> dict:
    """A JSON-able model description that :func:`build_model` turns into a model.

    Encoder LSTM sizes are ``(*hidden, E)``; decoder sizes mirror them,
    ``(E, *reversed(hidden))`` (the seeds' F -> 2E -> E -> E -> 2E -> F when
    hidden = (2E,)). ``steps`` (T) is needed by ``latent_as_sequence`` only.
    ``pooling`` is the encoder's readout (``lstm_encoder``); with a
    bidirectional encoder or ``"last_mean"`` a Dense layer maps it to E.
    ``activation`` / ``recurrent_activation``: every LSTM cell's non-linearities
    (Keras's names, ``kernels.cell.ACTIVATIONS``).
    """
    cfg = {
        "features": int(features),
        "decoder": decoder,
        "embedding_dim": int(embedding_dim),
        "hidden": [int(h) for h in hidden],
        "head": head,
        "steps": None if steps is None else int(steps),
        "bidirectional": bool(bidirectional),
        "pooling": pooling,
        "teacher_prob": float(teacher_prob),
        "reverse_target": reverse_target,
        "unroll": int(unroll),
        "init": init,
        "activation": activation,
        "recurrent_activation": recurrent_activation,
    }
    build_model(cfg)  # validate now, with the user's words, not at load time
    return cfg


def build_model(config: dict) -> Autoencoder:
    """Rebuild the model from :func:`model_config` (or a run config holding it under ``"model"``).

    Equal configs give the *same* model object (memoised), so jitted functions
    keyed on the model (``model.encode``, :func:`fit`'s default steps) compile
    once per process, e.g. for ``train`` followed by ``encode`` or a resume."""
    cfg = config["model"] if "model" in config else config
    return _build_model(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _build_model(key: str) -> Autoencoder:
    cfg = json.loads(key)
    name, e, hidden = cfg["decoder"], int(cfg["embedding_dim"]), tuple(cfg["hidden"])
    if name not in DECODERS:
        raise RunError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
    if e < 1 or any(h < 1 for h in hidden):
        raise RunError(f"embedding size and hidden sizes must be >= 1, got E={e}, hidden={list(hidden)}")
    if cfg["head"] not in HEAD_NAMES:
        raise RunError(f"unknown head {cfg['head']!r}; choose one of {', '.join(HEAD_NAMES)}")
    unroll = int(cfg.get("unroll", 1))
    init = cfg.get("init", "uniform")
    # runs saved before the options existed used tanh / sigmoid cells
    kw = {"unroll": unroll, "init": init, "activation": cfg.get("activation", "tanh"),
          "recurrent_activation": cfg.get("recurrent_activation", "sigmoid")}
    bi = bool(cfg.get("bidirectional", False))
    pooling = cfg.get("pooling", "last")  # runs saved before the option read out the last state
    if pooling not in POOLINGS:
        raise RunError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    wide = bi or pooling == "last_mean"  # the readout is wider than E: project it to E
    encoder = lstm_encoder((*hidden, e), bidirectional=bi, pooling=pooling, latent_dim=e if wide else None, **kw)
    sizes = (e, *reversed(hidden))
    if name == "latent_as_sequence":
        t = cfg.get("steps")
        if not t or e % int(t):
            raise RunError(
                f"the latent_as_sequence decoder reshapes z[E={e}] into T={t} steps, so E must be a multiple of T; "
                f"use --embedding-dim {int(t or 1) * max(1, round(e / int(t or 1)))} or another decoder"
            )
        decoder = DECODERS[name](sizes, steps=int(t), **kw)
    elif name == "teacher_forced":
        rev = cfg.get("reverse_target")
        decoder = DECODERS[name](sizes, reverse_target=True if rev is None else bool(rev), **kw)
    elif name == "conditional":
        rev = cfg.get("reverse_target")
        decoder = DECODERS[name](
            sizes, teacher_prob=float(cfg.get("teacher_prob", 0.0)), reverse_target=bool(rev), **kw
        )
    else:
        decoder = DECODERS[name](sizes, **kw)
    head = {"linear": lambda: linear("mse"), "mae": lambda: linear("mae"), "sigmoid": sigmoid}[cfg["head"]]()
    return make_autoencoder(encoder, decoder, head, features=int(cfg["features"]))


def optimizer_config(
    learning_rate: float = 1e-2,
    *,
    clip_norm: float | None = 1.0,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
) -> dict:
    """JSON-able arguments of :func:`make_optimizer` (warmup-cosine when
    ``warmup_steps`` or ``decay_steps`` is set, constant otherwise)."""
    return {
        "learning_rate": float(learning_rate),
        "clip_norm": None if not clip_norm else float(clip_norm),
        "weight_decay": float(weight_decay),
        "warmup_steps": int(warmup_steps),
        "decay_steps": None if decay_steps is None else int(decay_steps),
    }


def build_optimizer(config: dict) -> optax.GradientTransformation:
    """:func:`make_optimizer` from :func:`optimizer_config` (memoised like :func:`build_model`)."""
    cfg = config["optimizer"] if "optimizer" in config else config
    return _build_optimizer(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _build_optimizer(key: str) -> optax.GradientTransformation:
    cfg = json.loads(key)
    return make_optimizer(
        cfg["learning_rate"],
        clip_norm=cfg.get("clip_norm"),
        weight_decay=cfg.get("weight_decay", 0.0),
        warmup_steps=cfg.get("warmup_steps", 0),
        decay_steps=cfg.get("decay_steps"),
    )


# ------------------------------------------------------------------ atomic files
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one,
    never a torn one: temporary file in the same folder, fsync, os.replace."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _with_path(e, path) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _with_path(e, path) from None
        raise
    try:  # persist the rename itself
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _with_path(e: OSError, path) -> OSError:
    """The same error naming ``path`` (a full disk reports ENOSPC without a file name)."""
    if e.filename is not None or e.errno is None:
        return e
    return type(e)(e.errno, e.strerror, str(path))


def _to_host(tree):
    return jax.tree.map(lambda a: np.asarray(jax.device_get(a)) if hasattr(a, "shape") else a, tree)


def save_checkpoint(path, state: TrainState, extra: dict | None = None, best_params=None) -> None:
    """State (and JSON-able ``extra``, optional ``best_params`` shaped like
    ``state.params``) -> one msgpack file, atomically."""
    payload = {
        "state": serialization.to_state_dict(_to_host(state)),
        "extra": json.dumps(extra or {}),
    }
    if best_params is not None:
        payload["best_params"] = serialization.to_state_dict(_to_host(best_params))
    atomic_write(path, serialization.msgpack_serialize(payload))


def load_checkpoint(path, template: TrainState) -> tuple[TrainState, dict]:
    """Restore a state shaped like ``template`` (arrays or ``jax.ShapeDtypeStruct``
    leaves, e.g. from ``jax.eval_shape``); raises RunError on mismatch.

    Returns ``(state, extra)``; saved best params come back as ``extra["best_params"]``."""
    path = Path(path)
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
        restored = serialization.from_state_dict(template, raw["state"])
        extra = json.loads(raw.get("extra", "{}"))
        if "best_params" in raw:
            best = serialization.from_state_dict(template.params, raw["best_params"])
            extra["best_params"] = jax.tree.map(lambda t, r: np.asarray(r, t.dtype), template.params, best)
    except FileNotFoundError:
        raise RunError(f"{path}: no checkpoint here") from None
    except Exception as e:  # msgpack / structure errors carry no user-level meaning
        raise RunError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); it may be truncated") from None
    want = jax.tree.map(np.shape, template)
    got = jax.tree.map(np.shape, restored)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
        raise RunError(f"{path}: the checkpoint's arrays do not match the model in config.json")
    restored = jax.tree.map(lambda t, r: np.asarray(r, dtype=t.dtype), template, restored)
    return jax.tree.map(jax.numpy.asarray, restored), extra


# ------------------------------------------------------------------ runs
def save_run(
    run_dir, state: TrainState, config: dict, normalizer: Normalizer | None = None, *, extra=None, best_params=None
) -> Path:
    """Write config.json and checkpoint.msgpack into ``run_dir`` (created if
    needed). ``config`` holds ``"model"`` and ``"optimizer"`` sections (see
    :func:`model_config`, :func:`optimizer_config`) and anything JSON-able."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for key in ("model", "optimizer"):
        if key not in config:
            raise ValueError(f"config needs a {key!r} section (see {key}_config)")
    cfg = dict(config, version=CONFIG_VERSION, normalizer=None if normalizer is None else normalizer.to_dict())
    save_checkpoint(run_dir / CHECKPOINT_FILE, state, extra, best_params)
    atomic_write(run_dir / CONFIG_FILE, json.dumps(cfg, indent=2) + "\n")
    return run_dir


def read_config(run_dir) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        partial = run_dir.parent / f".{run_dir.name}.partial"
        if (partial / CONFIG_FILE).exists():  # a run stopped before its first swap into place (cli.rundir)
            raise RunError(
                f"{run_dir}: no such run directory; a stopped training of it is in {partial}: "
                f"finish it with `jax-lstm-ae train --resume --out {run_dir}`"
            )
        raise RunError(f"{run_dir}: no such run directory; train one with `jax-lstm-ae train --out {run_dir}`")
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE}); train one with `jax-lstm-ae train`")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e}); restore the file or train the run again") from None
    if not isinstance(cfg, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(cfg).__name__}; restore the file or train the run again")
    return cfg


def load_run(run_dir) -> Run:
    """Rebuild the model from config.json and restore checkpoint.msgpack.

    ``Run.params`` are the best epoch's params when the checkpoint holds them
    (fit with validation), else the state's; ``Run.state`` is the last state."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    try:
        model = build_model(config)
        optimizer = build_optimizer(config)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(
            f"{run_dir / CONFIG_FILE}: incomplete or invalid model or optimizer config ({type(e).__name__}: {e}); "
            "restore the file or train the run again"
        ) from None
    # Shapes and dtypes only: no random init is run to restore a run.
    template = jax.eval_shape(lambda: create_train_state(model, optimizer, jax.random.PRNGKey(0)))
    state, extra = load_checkpoint(run_dir / CHECKPOINT_FILE, template)
    best = extra.pop("best_params", None)
    params = state.params if best is None else jax.tree.map(jax.numpy.asarray, best)
    norm = config.get("normalizer")
    try:
        normalizer = None if norm is None else Normalizer.from_dict(norm)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(
            f"{run_dir / CONFIG_FILE}: invalid normalizer section ({type(e).__name__}: {e}); "
            "restore the file or train the run again"
        ) from None
    run = Run(model, params, state, config, normalizer, extra)
    if best is not None:
        run.extra["best_params"] = best  # kept for fit_progress_from_extra (resume)
    return run
