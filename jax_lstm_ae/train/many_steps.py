"""How K same-shaped models step together: the optimiser whose values live
in its state, the one train step run K ways (``vmap``, ``lax.map``, a loop of
the jitted single-model step), and the K states it carries. The runner is
``train.many``.

Per-model values are traced, never static: ``learning_rate``, ``clip_norm``
and ``weight_decay`` sit in each model's optimiser state
(``optax.inject_hyperparams``), the corruption's amount is an argument of the
step. What shapes the program (the schedule's form, the corruption's kind)
is static and shared.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jax_lstm_ae.data import Batch, batches
from jax_lstm_ae.nn.model import Autoencoder
from jax_lstm_ae.train.fit import guarded_step
from jax_lstm_ae.train.noise import gaussian_noise, step_dropout
from jax_lstm_ae.train.spec import Schedule, TrainSpec
from jax_lstm_ae.train.step import TrainState, train_step_fn

MODELS = "models"  # the mesh axis the K models are split over


def noise_of(spec: TrainSpec) -> tuple[str, float]:
    """The corruption's kind (it fixes the program: keys are split for it) and its amount."""
    if spec.input_noise:
        return "gaussian", spec.input_noise
    return ("dropout", spec.step_dropout) if spec.step_dropout else ("none", 0.0)


def run_noise_kind(specs) -> str:
    """The one corruption of K models' program: the first corrupted model's ("none" if none is); a
    clean model runs it at amount 0, which adds nothing (x + 0 * eps, or no step zeroed). A model
    of another kind is refused (:func:`train.many.check_specs`)."""
    return next((kind for kind, _ in map(noise_of, specs) if kind != "none"), "none")


# ------------------------------------------------------------------ optimiser with per-model values
def unit_schedule(spec: TrainSpec, total_steps: int):
    """The learning-rate schedule over a peak of 1 (None: constant), as ``make_optimizer`` shapes it."""
    o = spec.optimizer
    decay = total_steps if o.schedule is Schedule.COSINE else None
    if not (o.warmup_steps or decay):
        return None
    return o.warmup_steps, max(decay or 0, o.warmup_steps + 1)


@functools.lru_cache(maxsize=16)
def _injected(schedule: tuple[int, int] | None):
    """Adam(W) with clipping whose learning rate, clip norm and weight decay
    live in the optimiser state, so each of K stacked states carries its own.
    Equal, to rounding, to ``make_optimizer`` with the same values
    (``weight_decay`` 0 adds nothing; ``clip_norm`` inf clips nothing)."""
    unit = None if schedule is None else optax.warmup_cosine_decay_schedule(
        0.0, 1.0, max(schedule[0], 1), schedule[1], 0.01)

    def factory(learning_rate, clip_norm, weight_decay):
        lr = learning_rate if unit is None else (lambda count: learning_rate * unit(count))
        return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adamw(lr, weight_decay=weight_decay))

    return optax.inject_hyperparams(factory)


def many_optimizer(spec: TrainSpec, total_steps: int) -> optax.GradientTransformation:
    o = spec.optimizer
    return _injected(unit_schedule(spec, total_steps))(o.learning_rate, o.clip_norm or float("inf"), o.weight_decay)


# ------------------------------------------------------------------ the step, K ways
def _mapped(fn, strategy: str):
    """``fn`` over a leading axis K of every argument: vmap, or lax.map (one model at a time)."""
    return jax.vmap(fn) if strategy == "vmap" else (lambda *args: jax.lax.map(lambda a: fn(*a), args))


def models_mesh(mesh: Mesh | None, k: int) -> Mesh | None:
    """A one-axis mesh (``models``) over as many of ``mesh``'s devices as divide K (None: one device)."""
    devices = [] if mesh is None else list(mesh.devices.flat)
    d = max((d for d in range(1, len(devices) + 1) if k % d == 0), default=1)
    return None if d == 1 else Mesh(np.array(devices[:d]), (MODELS,))


@functools.lru_cache(maxsize=16)
def many_steps(model: Autoencoder, schedule, noise_kind: str, strategy: str, mesh: Mesh | None = None):
    """``(train_step, eval_step)``: ``((state, ok), batch, noise) -> ((state, ok), metrics)``
    and ``(params, batch) -> (loss, n_steps)``, jitted for one model
    (``loop``) or for K stacked ones, split over ``mesh``'s devices (``models_mesh``):
    each device runs its share of the K models (one device per CPU core runs
    them on every core, ``use_all_cores``)."""
    optimizer = _injected(schedule)(1.0, 1.0, 0.0)  # its update reads the values from each model's state

    def one(carry, batch, noise):
        corrupt = {"none": None, "gaussian": gaussian_noise, "dropout": step_dropout}[noise_kind]
        step = train_step_fn(model, optimizer, corrupt=None if corrupt is None else corrupt(noise))
        return guarded_step(step)(carry, batch)

    def evaluate(params, batch):
        return model.loss(params, batch.x, batch.lengths, train=False), jnp.sum(batch.lengths)

    if strategy == "loop":
        return jax.jit(one, donate_argnums=(0,)), jax.jit(evaluate)
    fns = [_mapped(one, strategy), _mapped(evaluate, strategy)]
    if mesh is not None:  # the model's scans start from constants: no varying-manual-axes check
        fns = [jax.shard_map(f, mesh=mesh, in_specs=P(MODELS), out_specs=P(MODELS), check_vma=False) for f in fns]
    return jax.jit(fns[0], donate_argnums=(0,)), jax.jit(fns[1])


def stack_trees(trees: Sequence) -> Any:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _host(tree):
    return jax.tree.map(lambda a: np.array(a, copy=True), jax.device_get(tree))


class Models:
    """The K models' states, stepped as the strategy says: stacked (vmap,
    map) or one by one (loop). ``ok[k]`` False freezes model k (stopped)."""

    def __init__(self, strategy: str, steps, states: list[TrainState], noise: list[float], mesh: Mesh | None = None):
        self.loop, (self.train_step, self.eval_step) = strategy == "loop", steps
        noise = [jnp.asarray(v, jnp.float32) for v in noise]
        if self.loop:
            self.carries, self.noise = [(s, jnp.asarray(True)) for s in states], noise
        else:
            self.carry, self.noise = (stack_trees(states), jnp.ones((len(states),), bool)), jnp.stack(noise)
            if mesh is not None:
                self.carry, self.noise = jax.device_put((self.carry, self.noise), NamedSharding(mesh, P(MODELS)))

    def step(self, group: Sequence[Batch], live: list[int]) -> tuple[list[int], Any, Any]:
        """One step of the live models: ``(which, loss[K'], finite[K'])`` on the device."""
        if not self.loop:
            batch = Batch(np.stack([b.x for b in group]), np.stack([b.lengths for b in group]))
            self.carry, m = self.train_step(self.carry, batch, self.noise)
            return list(range(len(group))), m["loss"], m["finite"]
        ms = []
        for k in live:
            self.carries[k], m = self.train_step(self.carries[k], group[k], self.noise[k])
            ms.append(m)
        return live, [m["loss"] for m in ms], [m["finite"] for m in ms]

    def stop(self, active: list[bool]) -> None:
        if not self.loop:
            self.carry = (self.carry[0], jnp.asarray(active) & self.carry[1])

    def params(self) -> list:
        """Host copies of the K models' params."""
        if self.loop:
            return [_host(c[0].params) for c in self.carries]
        stacked = _host(self.carry[0].params)
        return [jax.tree.map(lambda a: a[k], stacked) for k in range(len(self.noise))]

    def state(self) -> TrainState:
        return stack_trees([c[0] for c in self.carries]) if self.loop else self.carry[0]

    def evaluate(self, vals: list, batch: int, live: list[int]) -> dict[int, float]:
        """Each live model's mean per-step validation error, summed as ``fit.evaluate`` does."""
        live = [k for k in live if vals[k] is not None and vals[k].n]
        if not live:
            return {}
        total, steps = dict.fromkeys(live, 0.0), dict.fromkeys(live, 0.0)
        if not self.loop:  # all K stacked (a stopped model's loss is left unread)
            for group in zip(*(batches(v, batch, 0, shuffle=False) for v in vals)):
                out = self.eval_step(self.carry[0].params, Batch(np.stack([b.x for b in group]),
                                                                 np.stack([b.lengths for b in group])))
                loss, n = jax.device_get(out)
                for k in live:
                    total[k], steps[k] = total[k] + float(loss[k]) * float(n[k]), steps[k] + float(n[k])
            return {k: total[k] / steps[k] for k in live}
        for k in live:
            for b in batches(vals[k], batch, 0, shuffle=False):
                loss, n = jax.device_get(self.eval_step(self.carries[k][0].params, b))
                total[k], steps[k] = total[k] + float(loss) * float(n), steps[k] + float(n)
        return {k: total[k] / steps[k] for k in live}
