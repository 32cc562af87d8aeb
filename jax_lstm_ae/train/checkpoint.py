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

from jax_lstm_ae.data import Normalizer
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.nn.spec import ModelSpec, SpecError, build
from jax_lstm_ae.train.step import TrainState, create_train_state, make_optimizer

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.msgpack"
CONFIG_VERSION = 2  # 2: the model section is ModelSpec's dict; 1: model_config's keys (still read)


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
def model_spec(config: dict) -> ModelSpec:
    """The :class:`ModelSpec` of a run config (or of its ``model`` section):
    version 2 stores the spec's dict form, version 1 ``model_config``'s keys."""
    cfg = config["model"] if "model" in config else config
    if not isinstance(cfg, dict):
        raise SpecError(f"model: expected an object, got {cfg!r}; pass a ModelSpec's to_dict()")
    return ModelSpec.from_dict(cfg) if "encoder" in cfg else ModelSpec.from_v1(cfg)


def model_config(features: int, **v1_fields) -> dict:
    """A model section from version 1's keys (``decoder``, ``embedding_dim``,
    ``hidden``, ``head``, ``steps``, ``bidirectional``, ``pooling``,
    ``teacher_prob``, ``reverse_target``, ``unroll``, ``init``, ``activation``,
    ``recurrent_activation``), read as a version-1 config.json is
    (:meth:`ModelSpec.from_v1`); returns the spec's dict (version 2)."""
    return ModelSpec.from_v1({"features": features, **v1_fields}).to_dict()


def build_model(config: dict) -> Autoencoder:
    """The model a run config describes (memoised on its spec: equal configs,
    the same model object, so jitted functions compile once per process)."""
    return build(model_spec(config))


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
    """:func:`make_optimizer` from :func:`optimizer_config` (memoised on its
    values like :func:`build_model`, so fits with equal settings share the
    compiled step)."""
    cfg = config["optimizer"] if "optimizer" in config else config
    return _build_optimizer(tuple(sorted(cfg.items())))


@functools.lru_cache(maxsize=64)
def _build_optimizer(items: tuple) -> optax.GradientTransformation:
    cfg = dict(items)
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
        raise RunError(f"{path}: no checkpoint here; restore the file, or train the run again") from None
    except Exception as e:  # msgpack / structure errors carry no user-level meaning
        raise RunError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); "
                       "it may be truncated: restore it, or train the run again") from None
    want = jax.tree.map(np.shape, template)
    got = jax.tree.map(np.shape, restored)
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(want) != jax.tree.leaves(got):
        raise RunError(f"{path}: the checkpoint's arrays do not match the model in config.json; restore the run's own "
                       "files, or train the run again")
    restored = jax.tree.map(lambda t, r: np.asarray(r, dtype=t.dtype), template, restored)
    return jax.tree.map(jax.numpy.asarray, restored), extra


# ------------------------------------------------------------------ runs
def save_run(
    run_dir, state: TrainState, config: dict, normalizer: Normalizer | None = None, *, extra=None, best_params=None
) -> Path:
    """Write config.json and checkpoint.msgpack into ``run_dir`` (created if
    needed). ``config`` holds ``"model"`` and ``"optimizer"`` sections (see
    ``ModelSpec.to_dict()``, :func:`optimizer_config`) and anything JSON-able."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for key in ("model", "optimizer"):
        if key not in config:
            raise ValueError(f"config needs a {key!r} section; build it with {key}_config(...)")
    version = CONFIG_VERSION if "encoder" in config["model"] else 1
    cfg = dict(config, version=version, normalizer=None if normalizer is None else normalizer.to_dict())
    save_checkpoint(run_dir / CHECKPOINT_FILE, state, extra, best_params)
    atomic_write(run_dir / CONFIG_FILE, json.dumps(cfg, indent=2, allow_nan=False) + "\n")
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
        raise RunError(f"{path}: expected a JSON object, got {type(cfg).__name__}; "
                       "restore the file or train the run again")
    return cfg


def load_run(run_dir) -> Run:
    """Rebuild the model from config.json and restore checkpoint.msgpack.

    ``Run.params`` are the best epoch's params when the checkpoint holds them
    (fit with validation), else the state's; ``Run.state`` is the last state."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.get("kind") == "many":
        raise RunError(f"{run_dir}: a run of many models; read it with load_many (train.many_run), or one of its "
                       "models with load_many(...).pick(k)")
    try:
        if not isinstance(config.get("model"), dict) or not isinstance(config.get("optimizer"), dict):
            raise ValueError("no model or optimizer section")
        model = build_model(config)
        optimizer = build_optimizer(config)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RunError(
            f"{run_dir / CONFIG_FILE}: invalid model or optimizer config ({e}); "
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


# ------------------------------------------------------------------ metrics.jsonl
METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict]:
    """The epoch records of a metrics.jsonl; lines that are not a JSON object
    with an integer ``epoch`` and a numeric ``loss`` (a torn last line, an
    edit) are skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and type(rec.get("epoch")) is int and isinstance(rec.get("loss"), (int, float)):
            out.append(rec)
    return out


def sync_metrics(run_dir: Path, extra: dict) -> list[dict]:
    """Make metrics.jsonl hold exactly epochs 1..``extra["epoch"]`` (the
    checkpoint's), one line each, the last from the checkpoint itself."""
    done = int(extra.get("epoch", 0))
    by_epoch: dict[int, dict] = {}
    for rec in read_metrics(run_dir / METRICS_FILE):
        if 1 <= rec["epoch"] <= done:
            by_epoch.setdefault(rec["epoch"], rec)
    last = extra.get("last_record")
    if isinstance(last, dict) and last.get("epoch") == done:
        by_epoch[done] = last
    recs = [by_epoch[e] for e in sorted(by_epoch)]
    atomic_write(run_dir / METRICS_FILE, "".join(json.dumps(r, allow_nan=False) + "\n" for r in recs))
    return recs


def append_metrics(run_dir: Path, rec: dict) -> None:
    path = run_dir / METRICS_FILE
    try:
        with open(path, "a") as fh:
            fh.write(json.dumps(rec, allow_nan=False) + "\n")
            fh.flush()
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
