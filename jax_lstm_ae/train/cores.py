"""Every CPU core by default: one CPU device per core and the data mesh over them.

    mesh = use_all_cores()          # first, before anything runs on JAX
    step = make_train_step(model, optimizer, mesh=mesh)

XLA:CPU runs one device's computation on one thread at a time and does not
spread the small per-step GEMMs of a time loop over cores, so the batch is
split over one CPU device per core instead (``train.parallel``).
"""

from __future__ import annotations

import os
import warnings

import jax
from jax.sharding import Mesh

from jax_lstm_ae.train.allocator import tune_cpu_allocator
from jax_lstm_ae.train.parallel import make_data_mesh


def ask_for_cpu_devices(n: int) -> bool:
    """Give this process at least ``n`` CPU devices (``jax_num_cpu_devices``)
    if JAX has not started yet. Returns True when it will have them, False
    when JAX had already started (then nothing changes).

    One CPU device runs its computation on one thread at a time, and XLA:CPU
    does not spread small per-step GEMMs over cores; with the batch split
    over one CPU device per core, each device runs its share of the time loop
    on its own core (:func:`use_all_cores` does this for every core). GPU and
    TPU devices are not affected."""
    try:
        if jax.config.jax_num_cpu_devices < n:
            jax.config.update("jax_num_cpu_devices", n)
        return True
    except RuntimeError:  # JAX already started: keep the devices it has
        return False


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under
    ``taskset`` or a container's cpuset; ``os.cpu_count()`` where the OS has
    no affinity call)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def all_cores_mesh(*, warn: bool = True, max_devices: int | None = None) -> Mesh | None:
    """The data mesh :func:`use_all_cores` returns, without touching the
    allocator: one CPU device per core asked for, then a mesh over this
    process's CPU devices (one per core at most, and at most ``max_devices``,
    e.g. the batch size, so
    that no device gets only padding) when the default backend is the CPU
    and it has several; None otherwise (one device: the plain, unsharded
    path). On several processes: the mesh over every process's devices."""
    cores = cpu_cores()
    asked = ask_for_cpu_devices(cores)
    if jax.process_count() > 1:
        return make_data_mesh()
    if jax.default_backend() != "cpu":
        return None
    n = min(jax.local_device_count(), cores)  # more CPU devices than cores (asked for elsewhere) gain nothing
    if not asked and n < cores and warn:
        warnings.warn(
            f"JAX had already started with {n} CPU device(s) for {cores} cores; call "
            f"use_all_cores() before anything runs on JAX (or set jax_num_cpu_devices) to use every core",
            stacklevel=3,
        )
    if max_devices is not None:
        n = min(n, max(int(max_devices), 1))
    return make_data_mesh(n) if n > 1 else None


def use_all_cores(*, tune_allocator: bool = True) -> Mesh | None:
    """Set a CPU process up to use every core; returns the mesh to pass as
    ``mesh=`` (None where there is one device). Call it first, before
    anything runs on JAX::

        mesh = la.use_all_cores()
        step = la.make_train_step(model, optimizer, mesh=mesh)
        z = la.encode_dataset(model, params, x, lengths, mesh=mesh)

    It does what the ``jax-lstm-ae`` command does at start-up:
    :func:`~jax_lstm_ae.train.tune_cpu_allocator` (unless ``tune_allocator``
    is False; without it XLA's per-step buffers page-fault, and two devices
    faulting at once hardly run faster than one) and one CPU device per core
    (:func:`ask_for_cpu_devices`), and returns :func:`make_data_mesh` over
    them, so each batch is split over the cores: every device runs the time
    loop over its own rows on its own core. The sharded step computes the
    same function as the plain one; only the order of float additions in the
    gradient sums differs. On a GPU or TPU backend it returns None (one
    device, as without it); on several processes the mesh over all of their
    devices. Warns (and returns None) when JAX had already started with one
    CPU device."""
    if tune_allocator:
        tune_cpu_allocator()
    return all_cores_mesh()
