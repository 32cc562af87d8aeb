"""Will the train step fit in memory? Estimated before anything is allocated.

A model or a batch too big for the machine would otherwise fail deep inside
XLA (``RESOURCE_EXHAUSTED``) or be killed by the kernel, after the run was
set up. :func:`check_train_memory` estimates what the jitted train step
needs from shapes alone (``jax.eval_shape``: no random init is run) and
refuses, with the figures and what to change, when it exceeds what the
device has free: the host's available memory on CPU (``MemAvailable``,
within a cgroup's limit), ``device.memory_stats()`` on an accelerator.

The estimate, per device (CPU devices share the host's memory, so there the
devices' shares add up)::

    state   = params + optimiser state (from eval_shape) + 2 x params (gradients, the update)
    act     = 13 x B x T x sum(H over every LSTM layer, each direction) x 4 bytes
              + 4 x B x T x F_out x 4 bytes (head outputs, their gradients)

The factor 13 is what XLA:CPU's memory analysis of the compiled train step
gives for this package's stacks (12.3 to 12.9 across batch, length, depth
and width); ``cell.remat`` (chunks of K steps) keeps about 6 floats per
step and unit plus one chunk's 13. ``JAX_LSTM_AE_MEMORY_CHECK=0`` skips the
check (e.g. where the estimate is known to be wrong for a machine).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np

GIB = 2**30
ACT_FLOATS_PER_STEP_UNIT = 13  # saved gates, states and their gradients, per example, step and hidden unit
ACT_FLOATS_REMAT = 6  # with cell.remat: carries and input projections only, per step and unit


class ResourceError(ValueError):
    """What a run needs exceeds what the machine has; the message says what to change."""


class MemoryNeed(NamedTuple):
    state: int  # bytes: parameters, optimiser state, gradients (per device)
    per_example: int  # bytes of activations per sequence of the batch
    batch: int  # B, the whole step's (split over the devices)
    devices: int
    shared: bool  # the devices share one memory (CPU): their needs add up

    def total(self, batch: int | None = None) -> int:
        """Bytes one memory must hold (per device, or the host's for CPU devices)."""
        b = self.batch if batch is None else batch
        if self.shared:
            return self.devices * self.state + b * self.per_example
        return self.state + -(-b // self.devices) * self.per_example

    def largest_batch(self, available: int) -> int:
        """The largest batch whose step fits in ``available`` bytes (0: none)."""
        fixed = self.devices * self.state if self.shared else self.state
        if available <= fixed or self.per_example <= 0:
            return 0
        b = (available - fixed) // self.per_example
        return int(b if self.shared else b * self.devices)


def _nbytes(tree) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _lstm_units(params) -> int:
    """sum of H over every LSTM layer (and direction): the rows of each ``w_h``."""
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if getattr(path[-1], "name", None) == "w_h" and len(leaf.shape) == 2:
            total += int(leaf.shape[0])
    return total


def estimate_train_memory(model, optimizer, batch: int, steps: int, outputs: int, *, remat: int | None = None,
                          devices: int = 1, shared: bool = True) -> MemoryNeed:
    """What the train step needs for ``batch`` sequences of ``steps`` steps
    with ``outputs`` values per step (F, or V for tokens), from shapes only."""
    from jax_lstm_ae.train.step import create_train_state

    state = jax.eval_shape(lambda: create_train_state(model, optimizer, jax.random.PRNGKey(0)))
    state_bytes = _nbytes(state) + 2 * _nbytes(state.params)
    units = _lstm_units(state.params)
    if remat:
        floats = ACT_FLOATS_REMAT * steps + ACT_FLOATS_PER_STEP_UNIT * min(int(remat), steps)
    else:
        floats = ACT_FLOATS_PER_STEP_UNIT * steps
    per_example = 4 * (floats * units + 4 * steps * outputs)
    return MemoryNeed(state_bytes, per_example, int(batch), max(int(devices), 1), shared)


def _host_available() -> int | None:
    """Bytes the host can still give this process: MemAvailable, within a cgroup limit."""
    found = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                limit = fh.read().strip()
            with open(usage_file) as fh:
                used = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            found.append(max(int(limit) - used, 0))
        break
    return min(found) if found else None


def available_memory(device) -> tuple[int | None, str]:
    """``(bytes free, where)`` for ``device``; None when it cannot be told."""
    if device.platform == "cpu":
        return _host_available(), "host memory available"
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = None
    if not stats or "bytes_limit" not in stats:
        return None, ""
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return free, f"free on {device.platform.upper()} device {device.id}"


def _gib(n: int) -> str:
    if n >= 1024 * GIB:
        return f"{n / (1024 * GIB):,.1f} TiB"
    return f"{n / GIB:,.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:,.1f} MiB"


def check_train_memory(model, optimizer, batch: int, steps: int, outputs: int, *, remat: int | None = None,
                       mesh=None) -> MemoryNeed | None:
    """Refuse (:class:`ResourceError`) a train step that cannot fit in the
    memory of the device(s) it runs on; return the estimate (None: skipped)."""
    if os.environ.get("JAX_LSTM_AE_MEMORY_CHECK", "1") == "0":
        return None
    device = jax.local_devices()[0] if mesh is None else mesh.devices.flat[0]
    devices = 1 if mesh is None else int(mesh.devices.size)
    shared = device.platform == "cpu"
    need = estimate_train_memory(model, optimizer, batch, steps, outputs, remat=remat, devices=devices,
                                 shared=shared)
    available, where = available_memory(device)
    if available is None or need.total() <= available:
        return need
    fits = need.largest_batch(available)
    act = need.total() - (need.devices * need.state if shared else need.state)
    ways = []
    if 1 <= fits < batch:
        ways.append(f"a smaller batch (--batch-size {fits} or less)")
    ways.append("fewer or narrower LSTM layers (--hidden, --embedding-dim)")
    if not shared:
        ways.append("more devices to split the batch over (--devices)")
    raise ResourceError(
        f"training needs about {_gib(need.total())} of memory ({_gib(act)} for a batch of {batch} sequences of "
        f"{steps} steps, {_gib(need.total() - act)} for the parameters and optimiser state), but only "
        f"{_gib(available)} is {where}; use " + ", or ".join(ways))
