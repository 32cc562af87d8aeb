"""This library, through its public API (make_train_step, encode, reconstruct).

``build_with(la, ...)`` takes the imported package, so ``baseline_peer`` can
run another checkout of the library (an older commit) in the same process.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

import jax_lstm_ae as la
from jax_lstm_ae.train import all_cores_mesh
from peers import Runner
from peers._data import batch


def setup_with(la, cfg, **layer_kw):
    """The benchmark's model on the package ``la`` (only names every version
    has), its optimizer and initial state, and the config's batch x[B, T, F],
    lengths[B]: (model, optimizer, state, x, lengths)."""
    model = la.make_autoencoder(
        la.lstm_encoder(cfg.enc_sizes, **layer_kw), la.repeat(cfg.dec_sizes, **layer_kw), la.linear(),
        features=cfg.features,
    )
    optimizer = optax.adam(1e-3)
    state = la.create_train_state(model, optimizer, jax.random.PRNGKey(0))
    return model, optimizer, state, jnp.asarray(batch(cfg)), jnp.full((cfg.batch,), cfg.steps, jnp.int32)


def build_with(la, cfg, mode, *, backend: str = "auto", unroll: int = 1, remat: int | None = None,
               devices: int | None = None, **_) -> Runner:
    """The benchmark model on the package ``la``, as a :class:`Runner`."""
    model, optimizer, state, x, lengths = setup_with(la, cfg, backend=backend, unroll=unroll, remat=remat)
    versions = {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
                "backend": backend}

    if devices is None:  # the library's default: the batch split over one CPU device per core
        mesh = all_cores_mesh(warn=False)
    else:
        mesh = la.make_data_mesh(devices) if devices > 1 else None
    if mesh is not None:  # the global batch split over the mesh, params replicated
        from jax.sharding import NamedSharding, PartitionSpec

        x, lengths = jax.device_put((x, lengths), NamedSharding(mesh, PartitionSpec("data")))
        state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
        versions["devices"] = f"{mesh.devices.size} x {mesh.devices.flat[0].platform}"

    if mode == "train":
        train_step = la.make_train_step(model, optimizer, mesh=mesh)
        data = la.Batch(x, lengths)
        box = [state]

        def step():
            box[0], metrics = train_step(box[0], data)
            jax.block_until_ready(metrics)

        def memory():
            step_fn = la.train.train_step_fn if hasattr(la, "train") else la.train_step_fn
            return _temp_bytes(step_fn(model, optimizer), box[0], data)

        return Runner(step, versions, memory)

    params = state.params
    fn = model.encode if mode == "encode" else model.reconstruct

    def step():
        jax.block_until_ready(fn(params, x, lengths))

    return Runner(step, versions)


build = functools.partial(build_with, la)


def _temp_bytes(fn, *args) -> int | None:
    """XLA's own account of the compiled step's temporary buffers."""
    try:
        stats = jax.jit(fn).lower(*args).compile().memory_analysis()
        return int(stats.temp_size_in_bytes + stats.output_size_in_bytes + stats.argument_size_in_bytes)
    except Exception:  # noqa: BLE001 - optional diagnostic, backend dependent
        return None
