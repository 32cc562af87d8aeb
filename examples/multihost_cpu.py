"""Two processes on one machine, on CPU, training one model together.

    python examples/multihost_cpu.py            # launches 2 processes on 127.0.0.1, checks them

Each process has 2 CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2),
so the mesh has 4 devices over 2 processes. Each process loads only its own
rows of the data set (``process_rows``), trains two steps on them with the same
``make_train_step(..., mesh=mesh)`` used on one machine, then one step on a
batch every process holds whole (``global_batch``, as the command line does),
evaluates, encodes its rows and all rows with ``encode_dataset``, and takes one
FSDP step (parameters split over both processes). The launcher computes the
same thing on one device meanwhile and checks that both processes hold the
same parameters, equal to the single-device run, and the same latents. On real hosts run the worker once per host instead:

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=<i> \\
        python examples/multihost_cpu.py --worker --out DIR

Only the loopback address is used here, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

N_PROCESSES, DEVICES_PER_PROCESS = 2, 2
N_ROWS, T, F, LOCAL_BATCH, STEPS = 16, 6, 2, 4, 2
GLOBAL_ROWS = slice(3, 11)  # one more step on a batch every process holds whole (the CLI's way)


def _data():
    """The global data set; every process builds it and keeps only its rows."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_ROWS, T, F)).astype(np.float32)
    lengths = rng.integers(2, T + 1, size=N_ROWS).astype(np.int32)
    return x, lengths


def _model():
    import jax_lstm_ae as ae

    model = ae.make_autoencoder(ae.lstm_encoder((4,)), ae.repeat((4,)), ae.linear(), features=F)
    return model, ae.make_optimizer(1e-2)


def _flat(tree):
    import jax
    import numpy as np

    return {str(i): np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}


def worker(out: Path, timeout_s: int) -> None:
    from jax_lstm_ae.cli import devices as _flags
    from jax_lstm_ae.train import parallel as _parallel
    from jax_lstm_ae.train.distributed import initialize_distributed, process_rows

    if not initialize_distributed(timeout_s=timeout_s):  # reads JAX_COORDINATOR_ADDRESS, ...
        raise SystemExit("worker: no multi-process settings (JAX_COORDINATOR_ADDRESS, ...) were given")
    import jax
    import numpy as np

    import jax_lstm_ae as ae
    from jax_lstm_ae.train.parallel import encode_dataset, shard_batch

    pid = jax.process_index()
    # As the command line does it: --devices all -> every device of every process.
    flags = argparse.ArgumentParser()
    _flags.add_parallel_args(flags)
    args = flags.parse_args(["--devices", "all"])
    _flags.setup(args)
    mesh = args.mesh
    model, opt = _model()
    state = ae.create_train_state(model, opt, jax.random.key(0))  # same seed: same start everywhere
    step = ae.make_train_step(model, opt, mesh=mesh)
    x_all, lengths_all = _data()
    rows = process_rows(N_ROWS)
    x, lengths = x_all[rows], lengths_all[rows]
    losses = []
    for k in range(STEPS):
        sl = slice(k * LOCAL_BATCH, (k + 1) * LOCAL_BATCH)
        state, metrics = step(state, ae.Batch(x[sl], lengths[sl]))  # this process's rows only
        losses.append(float(metrics["loss"]))
    # Every process holds the same global batch; each places only its share.
    batch = shard_batch(ae.Batch(x_all[GLOBAL_ROWS], lengths_all[GLOBAL_ROWS]), mesh, global_batch=True)
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
    # A plain jitted eval on replicated params and a host batch that every process holds.
    eval_loss = float(ae.make_eval_step(model)(state.params, ae.Batch(x_all, lengths_all))["loss"])
    # The same through the sharded eval step the command line's fit() uses.
    sharded_eval = ae.make_eval_step(model, mesh=mesh, **_flags.fit_kwargs(args)["step_kwargs"])
    eval_loss_sharded = float(sharded_eval(state.params, ae.Batch(x_all, lengths_all))["loss"])
    # Replicated params: each process reads its own copy (no cross-process gather).
    params = _parallel.to_host(state.params)
    z = encode_dataset(model, params, x, lengths, mesh=mesh, batch_size=6)  # own rows -> own latents
    z_all = encode_dataset(model, params, x_all, lengths_all, mesh=mesh, batch_size=6, global_rows=True)
    # FSDP: one step from the start with every leaf of >= 8 elements split over
    # the 4 devices of both processes; to_host gathers the pieces back.
    fsdp_step = ae.make_train_step(model, opt, mesh=mesh, fsdp_min_size=8)
    fsdp_state, _ = fsdp_step(ae.create_train_state(model, opt, jax.random.key(0)),
                              ae.Batch(x[:LOCAL_BATCH], lengths[:LOCAL_BATCH]))
    n_split = sum(not a.is_fully_replicated for a in jax.tree.leaves(fsdp_state.params))
    fsdp = {"fsdp_" + name: v for name, v in _flat(_parallel.to_host(fsdp_state.params)).items()}
    np.savez(out / f"proc{pid}.npz", z=z, z_all=z_all, rows=np.arange(N_ROWS)[rows], **_flat(params), **fsdp)
    (out / f"proc{pid}.json").write_text(json.dumps({
        "process": pid, "processes": jax.process_count(), "devices": mesh.devices.size,
        "local_devices": jax.local_device_count(), "losses": losses, "eval_loss": eval_loss, "eval_loss_sharded": eval_loss_sharded,
        "fsdp_split_leaves": n_split,
        "steps": int(state.step.addressable_data(0)),
    }))
    jax.distributed.shutdown()


def reference(out: Path) -> None:
    """One process, one device, the same global batches (process 0's rows first)."""
    import jax
    import numpy as np

    import jax_lstm_ae as ae
    from jax_lstm_ae.train.distributed import process_rows

    model, opt = _model()
    state = ae.create_train_state(model, opt, jax.random.key(0))
    step = ae.make_train_step(model, opt)
    x, lengths = _data()
    shards = [process_rows(N_ROWS, p, N_PROCESSES) for p in range(N_PROCESSES)]
    losses = []
    for k in range(STEPS):
        idx = np.concatenate([np.arange(N_ROWS)[s][k * LOCAL_BATCH:(k + 1) * LOCAL_BATCH] for s in shards])
        state, metrics = step(state, ae.Batch(x[idx], lengths[idx]))
        losses.append(float(metrics["loss"]))
        if k == 0:
            after_one = {"fsdp_" + name: v for name, v in _flat(state.params).items()}
    state, metrics = step(state, ae.Batch(x[GLOBAL_ROWS], lengths[GLOBAL_ROWS]))
    losses.append(float(metrics["loss"]))
    eval_loss = float(ae.make_eval_step(model)(state.params, ae.Batch(x, lengths))["loss"])
    z = np.asarray(model.encode(state.params, x, lengths))
    np.savez(out / "reference.npz", z=z, **_flat(state.params), **after_one)
    (out / "reference.json").write_text(json.dumps({"losses": losses, "eval_loss": eval_loss}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out: Path, timeout_s: int) -> dict:
    """Start the workers, compute the reference meanwhile, compare."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    procs = []
    for pid in range(N_PROCESSES):
        env = dict(os.environ)
        env.update({
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                         f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}".strip(),
            "JAX_PLATFORMS": "cpu",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": str(N_PROCESSES),
            "JAX_PROCESS_ID": str(pid),
        })
        log = open(out / f"proc{pid}.log", "w")  # noqa: SIM115 - closed below, once the process is done
        procs.append((subprocess.Popen(
            [sys.executable, __file__, "--worker", "--out", str(out), "--timeout", str(timeout_s)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        ), log))
    t0 = time.monotonic()
    try:
        reference(out)
        for p, _ in procs:
            p.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    codes = [p.returncode for p, _ in procs]
    if any(codes):
        logs = "\n".join((out / f"proc{i}.log").read_text()[-3000:] for i in range(N_PROCESSES))
        raise SystemExit(f"workers exited with {codes}:\n{logs}")
    ref = np.load(out / "reference.npz")
    got = [np.load(out / f"proc{i}.npz") for i in range(N_PROCESSES)]
    keys = [k for k in ref.files if k != "z" and not k.startswith("fsdp_")]
    fsdp_keys = [k for k in ref.files if k.startswith("fsdp_")]
    ref_json = json.loads((out / "reference.json").read_text())
    z = np.concatenate([g["z"] for g in got])
    rows = np.concatenate([g["rows"] for g in got])
    summary = {
        "workers": [json.loads((out / f"proc{i}.json").read_text()) for i in range(N_PROCESSES)],
        "reference_losses": ref_json["losses"],
        "reference_eval_loss": ref_json["eval_loss"],
        "params_equal_across_processes": all(np.array_equal(got[0][k], g[k]) for g in got[1:] for k in keys),
        "max_abs_diff_vs_reference": max(float(np.max(np.abs(got[0][k] - ref[k]))) for k in keys),
        "latents_max_abs_diff_vs_reference": float(np.max(np.abs(z - ref["z"][rows]))),
        "all_latents_max_abs_diff_vs_reference": max(float(np.max(np.abs(g["z_all"] - ref["z"]))) for g in got),
        "fsdp_max_abs_diff_vs_reference": max(float(np.max(np.abs(g[k] - ref[k]))) for g in got for k in fsdp_keys),
        "seconds": round(time.monotonic() - t0, 1),
    }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help="run as one process of the group (reads JAX_* env)")
    ap.add_argument("--out", type=Path, default=None, help="folder for results (default: a temporary one)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds before giving up on the processes")
    args = ap.parse_args()
    if args.worker:
        worker(args.out, args.timeout)
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        summary = launch(args.out or Path(tmp), args.timeout)
    print(json.dumps(summary, indent=1))
    ok = (summary["params_equal_across_processes"] and summary["max_abs_diff_vs_reference"] < 1e-5
          and summary["fsdp_max_abs_diff_vs_reference"] < 1e-5)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
