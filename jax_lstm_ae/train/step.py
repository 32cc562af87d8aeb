"""Training: a TrainState pytree and one jitted, state-donating train step.

    state = create_train_state(model, optimizer, key)
    train_step = make_train_step(model, optimizer)
    for batch in batches:                      # Batch(x[B, T, F], lengths[B])
        state, metrics = train_step(state, batch)

The step folds the step number into the state's key (flax seq2seq and
big_vision habit), so a run is reproducible and resumable from any state.
A non-finite loss or gradient leaves params and optimizer state untouched and
reports ``metrics["finite"] = False``; the caller decides to stop.
``corrupt=`` (``gaussian_noise(0.1)``, ``step_dropout(0.2)``, see
``jax_lstm_ae.train.noise``) trains a denoising autoencoder.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from flax import struct

from jax_lstm_ae.data import Batch
from jax_lstm_ae.nn.model import Autoencoder, error_terms
from jax_lstm_ae.train.noise import Corruption
from jax_lstm_ae.train.parallel import DATA, data_parallel, shard_rows
from jax_lstm_ae._typing import Array, PRNGKey, PyTree


@struct.dataclass
class TrainState:
    step: Array  # [] int32
    params: PyTree
    opt_state: PyTree
    rng: PRNGKey


def create_train_state(model: Autoencoder, optimizer: optax.GradientTransformation, key: PRNGKey) -> TrainState:
    k_init, k_rng = jax.random.split(key)
    params = model.init(k_init)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), k_rng)


def make_optimizer(
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    clip_norm: float | None = 1.0,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    decay_steps: int | None = None,
) -> optax.GradientTransformation:
    """Adam(W) with optional global-norm clipping and a warmup-cosine schedule."""
    lr = learning_rate
    if not callable(lr) and (warmup_steps or decay_steps):
        lr = optax.warmup_cosine_decay_schedule(
            0.0, float(lr), max(warmup_steps, 1), max(decay_steps or 0, warmup_steps + 1), float(lr) * 0.01
        )
    opt = optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm else opt


def _all_finite(tree: PyTree) -> Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _sharded_loss_and_grad(model: Autoencoder, mesh: jax.sharding.Mesh, axis: str) -> Callable:
    """``(params, x, lengths, keys, inputs) -> (loss, grads)`` with each
    device running the model on its own rows (``shard_rows``): the loss is
    the sum of every device's errors over the global number of valid steps,
    so it equals the single-device loss on the same batch."""

    def per_device(params, x, lengths, keys, inputs):
        n = jnp.maximum(lax.psum(jnp.sum(lengths), axis), 1).astype(jnp.float32)

        def loss_fn(p):
            err = error_terms(model, p, x, lengths, keys, train=True, inputs=inputs)
            return jnp.sum(err) / n

        return lax.psum(jax.value_and_grad(loss_fn)(params), axis)

    return shard_rows(per_device, mesh, axis=axis)


def train_step_fn(
    model: Autoencoder, optimizer: optax.GradientTransformation, *, corrupt: Corruption | None = None,
    mesh: jax.sharding.Mesh | None = None, axis: str = DATA,
) -> Callable:
    """The un-jitted step ``(state, batch) -> (state, metrics)``; see :func:`make_train_step`.

    With ``mesh`` the forward and backward pass run under ``jax.shard_map``
    over ``axis`` (each device on its rows, gradients summed with one
    all-reduce); the optimizer update runs on the gradients as given."""
    sharded = None if mesh is None else _sharded_loss_and_grad(model, mesh, axis)

    def step_fn(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, Any]]:
        key = jax.random.fold_in(state.rng, state.step)
        inputs = None
        if corrupt is not None:  # its own key; without corrupt= the decoder's key is what it always was
            key, k_noise = jax.random.split(key)
            inputs = corrupt(k_noise, batch.x, batch.lengths)
        if sharded is None:
            loss, grads = jax.value_and_grad(model.loss)(state.params, batch.x, batch.lengths, key, train=True,
                                                         inputs=inputs)
        else:
            x, lengths = model.check_batch(batch.x, batch.lengths)
            # One key per global row, as model.loss draws them, so the step
            # equals the single-device step whatever the number of devices.
            keys = jax.random.split(key, x.shape[0])
            loss, grads = sharded(state.params, x, lengths, keys, inputs)
        updates, new_opt = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = state.replace(
            step=state.step + 1, params=keep(new_params, state.params), opt_state=keep(new_opt, state.opt_state)
        )
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "finite": finite}
        return new_state, metrics

    return step_fn


def make_train_step(
    model: Autoencoder, optimizer: optax.GradientTransformation, *, donate: bool = True,
    mesh: jax.sharding.Mesh | None = None, fsdp_min_size: int | None = None, global_batch: bool = False,
    corrupt: Corruption | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]:
    """A jitted ``(state, batch) -> (state, metrics)`` that donates ``state``.

    Donation lets XLA update params and optimizer state in place: do not use
    the state you passed in after the call. Metrics: ``loss`` (mean per-step
    error over valid steps), ``grad_norm``, ``finite``.

    ``mesh`` (e.g. ``make_data_mesh()``): the batch is split over the mesh's
    ``"data"`` axis and each device runs the forward and backward pass on its
    own rows under ``jax.shard_map`` (any backend, fused kernels included);
    the gradients are summed over the devices and the state is replicated.
    With ``fsdp_min_size`` leaves of at least that many elements are split
    over that axis too (gathered before the pass). A batch whose size does
    not divide by the number of data shards is *padded* with length-0 rows,
    which the loss ignores, so the result equals the unpadded step. On
    several processes each passes its own rows, or with ``global_batch=True``
    all pass the same global batch and each places only its share. See
    ``jax_lstm_ae.train.parallel``.

    ``corrupt`` ``(key, x, lengths) -> x'``: the encoder reads x' while the
    loss reconstructs x (a denoising autoencoder; ``gaussian_noise``,
    ``step_dropout``). Its key is split from the step's, so runs stay
    reproducible and resumable.
    """
    if mesh is None:
        if fsdp_min_size is not None or global_batch:
            raise ValueError("fsdp_min_size and global_batch are about a mesh; pass mesh=make_data_mesh() too")
        return jax.jit(train_step_fn(model, optimizer, corrupt=corrupt), donate_argnums=(0,) if donate else ())
    step = train_step_fn(model, optimizer, corrupt=corrupt, mesh=mesh)
    return data_parallel(step, mesh, donate=donate, fsdp_min_size=fsdp_min_size, global_batch=global_batch)


def make_eval_step(
    model: Autoencoder, *, mesh: jax.sharding.Mesh | None = None, global_batch: bool = False
) -> Callable[[PyTree, Batch], dict[str, Array]]:
    """A jitted ``(params, batch) -> {"loss", "n_steps"}`` in inference mode
    (free-running decoders); ``loss * n_steps`` sums over batches.

    ``mesh``: the batch is split over its ``"data"`` axis, each device scores
    its own rows (``shard_map``), padded as in :func:`make_train_step`
    (length-0 rows change neither number)."""

    def eval_step(params: PyTree, batch: Batch) -> dict[str, Array]:
        loss = model.loss(params, batch.x, batch.lengths, train=False)
        return {"loss": loss, "n_steps": jnp.sum(batch.lengths)}

    if mesh is None:
        return jax.jit(eval_step)

    def per_device(params, x, lengths):
        total, n = lax.psum((jnp.sum(error_terms(model, params, x, lengths)), jnp.sum(lengths)), DATA)
        return {"loss": total / jnp.maximum(n, 1).astype(total.dtype), "n_steps": n}

    sharded = shard_rows(per_device, mesh)

    def sharded_eval(params: PyTree, batch: Batch) -> dict[str, Array]:
        return sharded(params, *model.check_batch(batch.x, batch.lengths))

    return data_parallel(sharded_eval, mesh, returns_state=False, donate=False, global_batch=global_batch)
