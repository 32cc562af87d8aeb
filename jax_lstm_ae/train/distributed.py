"""Several processes (hosts): ``jax.distributed.initialize`` from flags or environment.

    initialize_distributed()          # reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
    initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=0)
    rows = process_rows(n)            # this process's contiguous shard of n examples

Call it first, before anything touches a device. Settings come from the
arguments, else from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID`` (and ``JAX_LOCAL_DEVICE_IDS``, which JAX reads itself);
``auto=True`` lets JAX detect them on SLURM, Open MPI, Kubernetes or Cloud TPU.
With none of these, nothing happens: one process, as usual.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax


class DistributedConfig(NamedTuple):
    coordinator_address: str | None  # "host:port" of process 0
    num_processes: int | None
    process_id: int | None
    auto: bool  # let JAX detect the cluster (SLURM, Open MPI, k8s, TPU)


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name}={v!r} must be an integer") from None


def distributed_config(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None,
    *, auto: bool = False,
) -> DistributedConfig | None:
    """Arguments, else environment variables; None when this is one plain process.

    Raises ValueError when some but not all of the three settings are given
    (and ``auto`` is off), naming the missing ones."""
    coord = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    n = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    if auto:
        return DistributedConfig(coord, n, pid, True)
    given = {"coordinator address (--coordinator / JAX_COORDINATOR_ADDRESS)": coord,
             "process count (--num-processes / JAX_NUM_PROCESSES)": n,
             "process id (--process-id / JAX_PROCESS_ID)": pid}
    missing = [k for k, v in given.items() if v is None]
    if len(missing) == 3:
        return None
    if missing:
        raise ValueError(
            "a multi-process run needs all three settings; missing: " + ", ".join(missing)
            + ". Or pass --distributed-auto on SLURM / Open MPI / Kubernetes / Cloud TPU"
        )
    if ":" not in coord:
        raise ValueError(f"the coordinator address must be host:port (process 0's address), got {coord!r}")
    if n < 1 or not 0 <= pid < n:
        raise ValueError(f"need num_processes >= 1 and 0 <= process_id < num_processes, got {pid} of {n}")
    return DistributedConfig(coord, n, pid, False)


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None,
    *, auto: bool = False, timeout_s: int = 300,
) -> bool:
    """Start ``jax.distributed`` when settings are present (module docstring).

    Returns True when this is (now) one of several processes, False for a plain
    single-process run. Calling it again after success is a no-op.
    ``timeout_s`` bounds how long processes wait for each other at start."""
    if jax.distributed.is_initialized():
        return True
    cfg = distributed_config(coordinator_address, num_processes, process_id, auto=auto)
    if cfg is None:
        return False
    kw = {} if cfg.auto else {"cluster_detection_method": "deactivate"}
    jax.distributed.initialize(
        cfg.coordinator_address, cfg.num_processes, cfg.process_id, initialization_timeout=int(timeout_s), **kw
    )
    return True


def process_rows(n: int, process_id: int | None = None, num_processes: int | None = None) -> slice:
    """The contiguous block of ``n`` examples that this process loads.

    Blocks differ in size by at most one; process ``p`` of ``P`` gets rows
    ``[p * n // P, (p + 1) * n // P)``."""
    p = jax.process_index() if process_id is None else process_id
    k = jax.process_count() if num_processes is None else num_processes
    return slice(p * n // k, (p + 1) * n // k)
