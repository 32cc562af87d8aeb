"""Data parallelism on JAX's own sharding: a mesh, a sharded step, streamed inference.

    mesh = make_data_mesh()                            # all devices on a 1-D "data" axis
    step = make_train_step(model, optimizer, mesh=mesh)  # the same step, sharded
    state, metrics = step(state, batch)                # batch[B] split over D devices
    z = encode_dataset(model, params, x, lengths, mesh=mesh)   # N rows, streamed

The step is ``jax.jit`` of the one ``train_step_fn`` with ``in_shardings`` /
``out_shardings``: the batch is split over the mesh's ``data`` axis, the state
is replicated (or, with ``fsdp_min_size``, its large leaves are split over the
same axis, ZeRO-3 style, and XLA inserts the all-gathers). The loss is the mean
over every valid step of the *global* batch, so the sharded step computes the
same function as the single-device one; only the order of float additions in
the reductions differs.

Batches that do not divide by the number of data shards are padded with
length-0 rows (zeros). A length-0 row contributes nothing to the loss, its
gradient or ``n_steps`` (the loss is ``sum(errors) / sum(lengths)``), so a padded
step equals the unpadded step; per-example PRNG keys are unchanged too because
``jax.random.split(key, B)[i]`` does not depend on B.

Several processes (hosts): call :func:`jax_lstm_ae.initialize_distributed`
first; then every process passes its *own* rows (its shard of the global batch)
and the mesh spans every process's devices. See ``examples/multihost_cpu.py``.
With ``global_batch=True`` every process passes the same *global* batch instead
(e.g. each loads the whole, small, data set with the same seed) and only its
own rows are placed on its devices.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jax_lstm_ae._typing import Array, PyTree
from jax_lstm_ae.data.lazy import RowsView

DATA = "data"


# ----------------------------------------------------------------- the mesh
def _devices_per_process(n: int | None) -> list:
    """The first ``n`` devices of every process (all when n is None), in process order."""
    by_proc: dict[int, list] = {}
    for d in jax.devices():
        by_proc.setdefault(d.process_index, []).append(d)
    local = len(by_proc[jax.process_index()])
    if n is not None and not 1 <= n <= local:
        raise ValueError(
            f"asked for {n} devices but this process sees {local} "
            f"({jax.local_devices()[0].platform}); use a number in [1, {local}] or 'all'. On CPU, "
            f"set XLA_FLAGS=--xla_force_host_platform_device_count=N before jax is imported for N fake devices"
        )
    out = []
    for p in sorted(by_proc):
        devs = sorted(by_proc[p], key=lambda d: d.id)
        out.extend(devs if n is None else devs[:n])
    return out


def make_data_mesh(devices: int | str | Sequence[Any] | None = None, *, axis: str = DATA) -> Mesh:
    """A 1-D mesh with one ``axis`` ("data") over D devices.

    Args:
      devices: ``None`` or ``"all"``: every device of every process; an int N:
        the first N devices *of each process* (D = N x processes); or an
        explicit list of devices.

    The axis is ``AxisType.Auto``: shardings are given at the ``jit`` boundary
    and XLA propagates them inside (``jax.make_mesh`` defaults to Explicit).
    """
    if devices is None or devices == "all":
        devs = _devices_per_process(None)
    elif isinstance(devices, (int, np.integer)) or (isinstance(devices, str) and devices.isdigit()):
        devs = _devices_per_process(int(devices))
    elif isinstance(devices, str):
        raise ValueError(f"devices must be a positive number or 'all', got {devices!r}")
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("make_data_mesh got an empty device list")
    return Mesh(np.asarray(devs, dtype=object), (axis,), axis_types=(AxisType.Auto,))


def _as_auto(mesh: Mesh) -> Mesh:
    """The same devices and names with Auto axes. The model vmaps over the batch,
    which Explicit axes (``jax.make_mesh``'s default) reject; under Auto the
    shardings given to ``jit`` are propagated by XLA instead."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def _data_size(mesh: Mesh, axis: str) -> int:
    if axis not in mesh.axis_names:
        raise ValueError(
            f"the mesh has axes {mesh.axis_names} but batches are split over {axis!r}; "
            f"build it with make_data_mesh() or name one axis {axis!r}"
        )
    return int(mesh.shape[axis])


def _local_data_shards(mesh: Mesh, axis: str) -> int:
    """How many slices of the data axis this process holds (D on one process)."""
    pos = mesh.axis_names.index(axis)
    idx = {i[pos] for i, d in np.ndenumerate(mesh.devices) if d.process_index == jax.process_index()}
    if not idx:
        raise ValueError(f"process {jax.process_index()} holds no device of the mesh; every process needs one")
    return len(idx)


def data_sharding(mesh: Mesh, axis: str = DATA) -> NamedSharding:
    """Rows (axis 0) split over ``axis``, everything else replicated."""
    _data_size(mesh, axis)
    return NamedSharding(_as_auto(mesh), PartitionSpec(axis))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(_as_auto(mesh), PartitionSpec())


# ----------------------------------------------------------------- shardings of the state
def _leaf_sharding(leaf, mesh: Mesh, axis: str, d: int, fsdp_min_size: int | None) -> NamedSharding:
    shape = getattr(leaf, "shape", ())
    if fsdp_min_size is None or math.prod(shape) < fsdp_min_size or jax.dtypes.issubdtype(
        getattr(leaf, "dtype", None), jax.dtypes.prng_key
    ):
        return replicated(mesh)
    # The largest dimension that splits evenly; ties go to the last (G = 4H for LSTM weights).
    best = None
    for i, n in enumerate(shape):
        if n % d == 0 and n >= d and (best is None or n >= shape[best]):
            best = i
    if best is None:
        return replicated(mesh)
    return NamedSharding(mesh, PartitionSpec(*([None] * best + [axis])))


def state_shardings(state: PyTree, mesh: Mesh, *, fsdp_min_size: int | None = None, axis: str = DATA) -> PyTree:
    """A pytree of ``NamedSharding`` like ``state``: replicated leaves, or with
    ``fsdp_min_size``, leaves of at least that many elements split over ``axis``
    along their largest evenly divisible dimension (Adam's moments follow their
    parameters because they have the same shapes)."""
    d, mesh = _data_size(mesh, axis), _as_auto(mesh)
    return jax.tree.map(lambda leaf: _leaf_sharding(leaf, mesh, axis, d, fsdp_min_size), state)


def _to_sharding(x, sharding: NamedSharding):
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    # Several processes: every process holds the same full value (same seed);
    # device_put checks that and places each process's addressable slices.
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(jax.device_put(np.asarray(jax.random.key_data(x)), sharding), impl=impl)
    return jax.device_put(np.asarray(x), sharding)


def shard_state(state: PyTree, shardings: PyTree) -> PyTree:
    """Place ``state`` with ``shardings`` (from :func:`state_shardings`); leaves
    already placed are passed through untouched."""
    return jax.tree.map(_to_sharding, state, shardings)


# ----------------------------------------------------------------- batches
def _pad_rows(a, rows: int):
    extra = rows - a.shape[0]
    if extra == 0:
        return a
    if isinstance(a, RowsView):  # rows not read yet: padded with zero rows when read
        return a.padded(rows)
    xp = np if isinstance(a, np.ndarray) else jnp
    return xp.concatenate([a, xp.zeros((extra,) + tuple(a.shape[1:]), a.dtype)], axis=0)


def pad_batch(batch, multiple: int):
    """Pad ``Batch(x[B, ...], lengths[B])`` to a multiple of ``multiple`` rows
    with zero rows of length 0, which the loss ignores (module docstring).

    Returns the padded batch (the same object when no padding is needed)."""
    b = batch[0].shape[0]
    rows = -(-b // multiple) * multiple
    if rows == b:
        return batch
    return type(batch)(*(_pad_rows(a, rows) for a in batch))


def _is_global(a, sharding: NamedSharding) -> bool:
    return isinstance(a, jax.Array) and (a.sharding == sharding or not a.is_fully_addressable)


def _place_rows(arrays: tuple, mesh: Mesh, axis: str, global_rows: bool) -> tuple:
    """Row-major host arrays -> global arrays split over ``axis`` (see shard_batch)."""
    sharding = data_sharding(mesh, axis)
    if jax.process_count() == 1:
        return jax.device_put(arrays, sharding)
    if global_rows:  # every process holds every row; each places its own slices
        return tuple(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]) for a in arrays)
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in arrays)


def shard_batch(batch, mesh: Mesh, *, axis: str = DATA, global_batch: bool = False):
    """This process's rows -> global arrays split over ``axis``, padded with
    length-0 rows to a multiple of the data shards this process holds.

    On one process the rows are the global batch. ``global_batch=True``: every
    process passes the same global batch (padded to a multiple of all data
    shards) and places only its own rows. Arrays already placed with the data
    sharding (or already global) pass through. In local mode every process
    must pass the same number of rows: the global shape is that times P."""
    mesh = _as_auto(mesh)
    sharding = data_sharding(mesh, axis)
    if all(_is_global(a, sharding) for a in batch):
        return batch
    multi = jax.process_count() > 1  # several processes place rows from host memory
    # A RowsView (rows of a file, data.lazy) stays unread: each process reads the slices it places.
    batch = type(batch)(*(a if isinstance(a, RowsView) else np.asarray(a) if multi or not isinstance(a, jax.Array)
                          else a for a in batch))
    batch = pad_batch(batch, _data_size(mesh, axis) if global_batch else _local_data_shards(mesh, axis))
    return type(batch)(*_place_rows(tuple(batch), mesh, axis, global_batch))


# ----------------------------------------------------------------- the sharded step
class ShardedStep:
    """``fn(state, batch)`` jitted over a mesh: the batch split over ``axis``, the
    state placed by :func:`state_shardings`; made by :func:`data_parallel`.

    Calls take host (NumPy) or device batches of this process's rows, pad them
    (module docstring) and place them; the state is placed on the first call
    and stays placed because the outputs carry the same shardings, so the
    jitted function compiles once per batch shape.
    """

    def __init__(self, fn: Callable, mesh: Mesh, *, returns_state: bool, donate: bool,
                 fsdp_min_size: int | None, axis: str, global_batch: bool = False):
        _data_size(mesh, axis)
        self.fn, self.mesh, self.axis, self.global_batch = fn, _as_auto(mesh), axis, global_batch
        self.returns_state, self.donate, self.fsdp_min_size = returns_state, donate, fsdp_min_size
        self._jitted: dict[Any, Any] = {}
        self._seen: tuple[list, Any] = ([], None)  # (weakrefs to state leaves, their placed copy or None)

    def _jit_for(self, leaves, treedef):
        key = (treedef, tuple(getattr(a, "shape", ()) for a in leaves))
        hit = self._jitted.get(key)
        if hit is None:
            shs = state_shardings(jax.tree.unflatten(treedef, leaves), self.mesh,
                                  fsdp_min_size=self.fsdp_min_size, axis=self.axis)
            rep = replicated(self.mesh)
            jitted = jax.jit(
                self.fn,
                in_shardings=(shs, data_sharding(self.mesh, self.axis)),
                out_shardings=(shs, rep) if self.returns_state else rep,
                donate_argnums=(0,) if self.donate else (),
            )
            hit = self._jitted[key] = (shs, jax.tree.leaves(shs), jitted)
        return hit

    def _batch(self, batch):
        if jax.process_count() > 1:
            return shard_batch(batch, self.mesh, axis=self.axis, global_batch=self.global_batch)
        # One process: jit places host arrays with its in_shardings itself, which
        # costs less per step than device_put; only padding is left to do here.
        ds = data_sharding(self.mesh, self.axis)
        batch = pad_batch(batch, _data_size(self.mesh, self.axis))
        return type(batch)(*(a if not isinstance(a, jax.Array) or a.sharding == ds else jax.device_put(a, ds)
                             for a in batch))

    def _prepare(self, state, batch):
        leaves, treedef = jax.tree.flatten(state)
        shs, _, jitted = self._jit_for(leaves, treedef)
        # The common cases cost one identity test per leaf: the state is the last
        # step's output (already placed), or params placed on an earlier call.
        src, placed = self._seen
        if len(src) == len(leaves) and all(r() is a for r, a in zip(src, leaves)):
            state = state if placed is None else placed
        else:
            placed = shard_state(state, shs)
            self._seen = ([weakref.ref(a) for a in leaves], placed)
            state = placed
        return jitted, state, self._batch(batch)

    def __call__(self, state, batch):
        jitted, state, batch = self._prepare(state, batch)
        out = jitted(state, batch)
        if self.returns_state:
            self._seen = ([weakref.ref(a) for a in jax.tree.leaves(out[0])], None)
        return out

    def lower(self, state, batch):
        jitted, state, batch = self._prepare(state, batch)
        return jitted.lower(state, batch)

    def cache_size(self) -> int:
        """Compiled variants so far (1 after any number of same-shape steps)."""
        return sum(j._cache_size() for _, _, j in self._jitted.values())


def data_parallel(
    fn: Callable, mesh: Mesh, *, returns_state: bool = True, donate: bool = True,
    fsdp_min_size: int | None = None, axis: str = DATA, global_batch: bool = False,
) -> ShardedStep:
    """Jit ``fn(state, batch)`` over ``mesh`` (see :class:`ShardedStep`).

    ``returns_state``: ``fn`` returns ``(state, metrics)`` (a train step) rather
    than metrics only (an eval step taking params). Metrics come back replicated.
    ``global_batch``: see :func:`shard_batch`.
    """
    return ShardedStep(fn, mesh, returns_state=returns_state, donate=donate, fsdp_min_size=fsdp_min_size,
                       axis=axis, global_batch=global_batch)


def shard_rows(fn: Callable, mesh: Mesh, *, axis: str = DATA) -> Callable:
    """``fn(replicated, *rows)`` run per device with ``jax.shard_map``: every
    ``rows`` argument (a pytree of [B, ...] arrays, or None) is split over
    ``axis``, so each device runs the model's backend on its own rows (the
    fused cuDNN and Pallas calls have no partitioning rule of their own);
    ``replicated`` (the params) is whole on every device. ``fn`` must reduce
    its results over ``axis`` itself (``lax.psum``): they are returned as
    replicated values."""
    mesh = _as_auto(mesh)
    _data_size(mesh, axis)

    def run(replicated_arg, *rows):
        specs = (PartitionSpec(),) + tuple(jax.tree.map(lambda _: PartitionSpec(axis), r) for r in rows)
        # check_vma=False: fn reduces over the axis explicitly; with JAX's
        # varying-value tracking on, gradients of replicated params would be
        # summed over the axis a second time.
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(), check_vma=False)(
            replicated_arg, *rows)

    return run


def to_host(tree: PyTree) -> PyTree:
    """Every leaf as a full NumPy array in this process, however it is placed:
    replicated leaves are read from a local copy; leaves split across processes
    (FSDP on several hosts) are gathered, which every process must call."""

    def one(a):
        if not isinstance(a, jax.Array) or a.is_fully_addressable:
            return np.asarray(a)
        if a.is_fully_replicated:
            return np.asarray(a.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(one, tree)


# ----------------------------------------------------------------- streamed inference
def _local_rows(out: Array) -> np.ndarray:
    """This process's rows of a global array split over its first axis."""
    shards = sorted(out.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, parts = set(), []
    for s in shards:  # replicas along other mesh axes hold the same rows
        start = s.index[0].start or 0
        if start not in seen:
            seen.add(start)
            parts.append(np.asarray(s.data))
    return np.concatenate(parts, axis=0)


@functools.lru_cache(maxsize=32)
def _jit_rows(fn: Callable, mesh: Mesh, axis: str) -> Callable:
    """``fn(params, x, lengths)`` jitted with rows split over ``axis``, once per
    (fn, mesh): a model's methods are hashable values, so repeated calls of
    :func:`map_dataset` reuse the compiled function."""
    rep, dat = replicated(mesh), data_sharding(mesh, axis)
    return jax.jit(fn, in_shardings=(rep, dat, dat), out_shardings=dat)


def map_dataset(
    fn: Callable, params: PyTree, x, lengths=None, *, mesh: Mesh | None = None, batch_size: int = 1024,
    axis: str = DATA, global_rows: bool = False,
) -> np.ndarray:
    """Apply ``fn(params, x[b], lengths[b]) -> [b, ...]`` to N rows in batches of
    ``batch_size`` (global), each split over the mesh, results gathered to host.

    ``x`` may be any array-like indexable by row slices (a ``np.load(...,
    mmap_mode="r")`` memmap streams from disk), so the data set never has to
    fit on a device, or in host memory beyond one batch plus the result. The
    last batch is padded with length-0 rows (dropped from the result), so
    ``fn`` compiles once. The next batch is dispatched before the previous
    result is fetched, which overlaps transfers with compute.

    Several processes: by default each passes its own rows and gets its own
    results (all run as many batches as the largest shard needs). With
    ``global_rows=True`` each passes the same N rows, places only its slices,
    and gets all N results.
    """
    mesh = make_data_mesh(1) if mesh is None else _as_auto(mesh)
    n, t = int(x.shape[0]), int(x.shape[1])
    procs = len({d.process_index for d in mesh.devices.flat})
    d_all, d_local = _data_size(mesh, axis), _local_data_shards(mesh, axis)
    local = procs > 1 and not global_rows
    # Rows this process passes per batch: a multiple of the shards they are split over.
    per = max(d_local, -(-batch_size // procs // d_local) * d_local) if local else -(-batch_size // d_all) * d_all
    n_batches = -(-n // per)
    if local:
        n_batches = int(np.max(multihost_utils.process_allgather(np.asarray(n_batches))))
    if n_batches == 0:
        raise ValueError("no examples to process (x has 0 rows)")
    if lengths is None:
        lengths = np.full((n,), t, np.int32)
    rep = replicated(mesh)
    params = shard_state(params, jax.tree.map(lambda _: rep, params))
    jitted = _jit_rows(fn, mesh, axis)

    def launch(i):
        lo, hi = min(i * per, n), min((i + 1) * per, n)
        xb = _pad_rows(np.asarray(x[lo:hi]), per)
        lb = _pad_rows(np.asarray(lengths[lo:hi], np.int32), per)
        return jitted(params, *_place_rows((xb, lb), mesh, axis, not local)), hi - lo

    def fetch(out):
        if out.is_fully_addressable:
            return np.asarray(out)
        if local:
            return _local_rows(out)
        return np.asarray(multihost_utils.process_allgather(out, tiled=True))

    parts = []
    pending = launch(0)
    for i in range(1, n_batches + 1):
        nxt = launch(i) if i < n_batches else None
        out, m = pending
        parts.append(fetch(out)[:m])
        pending = nxt
    return np.concatenate(parts, axis=0)


def encode_dataset(model, params: PyTree, x, lengths=None, *, mesh: Mesh | None = None, batch_size: int = 1024,
                   global_rows: bool = False):
    """Latents z[N, E] of N rows x[N, T, F], streamed (see :func:`map_dataset`)."""
    return map_dataset(model.encode, params, x, lengths, mesh=mesh, batch_size=batch_size, global_rows=global_rows)


def reconstruct_dataset(model, params: PyTree, x, lengths=None, *, mesh: Mesh | None = None,
                        batch_size: int = 1024, global_rows: bool = False):
    """Reconstructions [N, T, K] of N rows, streamed (see :func:`map_dataset`)."""
    return map_dataset(model.reconstruct, params, x, lengths, mesh=mesh, batch_size=batch_size,
                       global_rows=global_rows)


def step_errors_dataset(model, params: PyTree, x, lengths=None, *, mesh: Mesh | None = None,
                        batch_size: int = 1024, global_rows: bool = False):
    """Per-step errors [N, T] of N rows (the input to anomaly scores), streamed."""
    return map_dataset(model.step_errors, params, x, lengths, mesh=mesh, batch_size=batch_size,
                       global_rows=global_rows)
