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
from jax_lstm_ae.train import cpu_cores
from peers import Runner
from peers._data import batch


def build_with(la, cfg, mode, *, backend: str = "auto", unroll: int = 1, remat: int | None = None,
               devices: int | None = None, **_) -> Runner:
    """The benchmark model on the package ``la`` (only names every version has)."""
    kw = dict(backend=backend, unroll=unroll, remat=remat)
    model = la.make_autoencoder(
        la.lstm_encoder(cfg.enc_sizes, **kw), la.repeat(cfg.dec_sizes, **kw), la.linear(), features=cfg.features
    )
    x = jnp.asarray(batch(cfg))
    lengths = jnp.full((cfg.batch,), cfg.steps, jnp.int32)
    optimizer = optax.adam(1e-3)
    state = la.create_train_state(model, optimizer, jax.random.PRNGKey(0))
    versions = {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
                "backend": backend}

    if devices is None:  # the library's default: the batch split over one CPU device per core
        devices = min(cpu_cores(), jax.local_device_count()) if jax.default_backend() == "cpu" else 1
    mesh = la.make_data_mesh(devices) if devices > 1 else None
    if mesh is not None:  # the global batch split over the mesh, params replicated
        from jax.sharding import NamedSharding, PartitionSpec

        x, lengths = jax.device_put((x, lengths), NamedSharding(mesh, PartitionSpec("data")))
        state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
        versions["devices"] = f"{devices} x {mesh.devices.flat[0].platform}"

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
