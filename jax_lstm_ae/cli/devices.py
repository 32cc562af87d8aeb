"""Command-line flags for devices and hosts: ``--devices N|all`` and the
multi-process flags, as a hook of ``cli.args.COMMON_ARG_MODULES``
(``add_args``, ``setup``, ``fit_kwargs``)."""

from __future__ import annotations

import argparse

import jax
from jax.sharding import Mesh

from jax_lstm_ae.cli.checks import integer, is_ascii_int, positive
from jax_lstm_ae.cli.shell import fail
from jax_lstm_ae.train.distributed import initialize_distributed
from jax_lstm_ae.train.cores import all_cores_mesh, ask_for_cpu_devices, cpu_cores
from jax_lstm_ae.train.parallel import make_data_mesh


MAX_CPU_DEVICES = 64  # or 4 per core, whichever is more


def _devices_flag(s: str) -> int | str:
    if s in ("all", "auto"):
        return s
    if is_ascii_int(s) and int(s) >= 1:
        return int(s)
    raise argparse.ArgumentTypeError(f"--devices takes a positive number, 'all' or 'auto', got {s!r}; "
                                     "give e.g. --devices 2")


def add_parallel_args(parser, *, training: bool = False) -> None:
    """``--devices N|all`` and the multi-process flags, on an argparse parser
    (``--fsdp-min-size`` too for ``training``: it shapes the train step only)."""
    g = parser.add_argument_group("devices and hosts")
    g.add_argument("--devices", type=_devices_flag, default="auto", metavar="N|all|auto",
                   help="split each batch over N devices of this process (or all); default auto: on a CPU "
                        "backend one device per core, on GPU/TPU one device, all of them when several "
                        "processes run; 1 gives the plain one-device run")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address for a multi-process run (env JAX_COORDINATOR_ADDRESS)")
    g.add_argument("--num-processes", type=positive, default=None, metavar="P",
                   help="number of processes (env JAX_NUM_PROCESSES)")
    g.add_argument("--process-id", type=integer(">=0"), default=None, metavar="I",
                   help="this process's id in [0, P) (env JAX_PROCESS_ID)")
    g.add_argument("--distributed-auto", action="store_true",
                   help="let JAX detect the processes (SLURM, Open MPI, Kubernetes, Cloud TPU)")
    if training:
        g.add_argument("--fsdp-min-size", type=positive, default=None, metavar="N",
                       help="also split every parameter of at least N elements over the devices (FSDP)")


def setup_parallel(args) -> Mesh | None:
    """Start ``jax.distributed`` if asked, then build the mesh the flags ask for.

    Returns None for a plain one-device, one-process run (the unsharded path).
    ``auto`` (the default) is :func:`all_cores_mesh`: one CPU device per core
    on a CPU backend. Call it before anything touches a device."""
    multi = initialize_distributed(
        getattr(args, "coordinator", None), getattr(args, "num_processes", None),
        getattr(args, "process_id", None), auto=getattr(args, "distributed_auto", False),
    )
    devices = getattr(args, "devices", None)
    if devices == "auto":
        return make_data_mesh() if multi else all_cores_mesh(warn=False, max_devices=getattr(args, "batch_size", None))
    if not multi and devices in (None, 1):
        return None
    if isinstance(devices, int):
        limit = max(MAX_CPU_DEVICES, 4 * cpu_cores())
        if devices > limit:  # XLA aborts the process when asked for thousands of CPU devices
            fail(f"--devices {devices} is more than this process can split a batch over (at most {limit} CPU "
                 f"devices for {cpu_cores()} cores); use --devices auto (one per core) or a smaller number")
        ask_for_cpu_devices(devices)
    return make_data_mesh(devices)



# The CLI's hook protocol (``_cli.COMMON_ARG_MODULES``): flags, setup, fit() keywords.
add_args = add_parallel_args


def setup(args) -> None:
    """Start processes and build the mesh once; commands read ``args.mesh``."""
    args.mesh = setup_parallel(args)


def fit_kwargs(args) -> dict:
    mesh = getattr(args, "mesh", None)
    if mesh is None:
        return {}
    # The CLI loads the whole data set in every process and draws the same
    # batches (same seed), so each process places only its share of each batch.
    kw = {"global_batch": jax.process_count() > 1}
    if getattr(args, "fsdp_min_size", None):
        kw["fsdp_min_size"] = args.fsdp_min_size
    return {"mesh": mesh, "step_kwargs": kw}
