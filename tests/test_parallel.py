"""Data parallelism: sharded step == single-device step, padding, no retrace,
streamed latents, flags and environment, and two processes on one machine.

Tests needing 4 or 8 devices run one worker subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax is
imported (this pytest process has one CPU device); the worker computes every
comparison once and returns the numbers as JSON, and the tests below assert
on them. ``python tests/test_parallel.py worker`` runs it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest

import jax_lstm_ae as ae
from jax_lstm_ae.train.distributed import distributed_config, initialize_distributed, process_rows
from jax_lstm_ae.cli.devices import add_parallel_args, setup_parallel
from jax_lstm_ae.train.parallel import make_data_mesh, pad_batch, state_shardings

ROOT = Path(__file__).resolve().parents[1]
F, T = 2, 5


# ----------------------------------------------------------------- the 8-device worker
def _worker() -> dict:
    # Run as a script: XLA_FLAGS came with the environment, before jax was imported.
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from jax_lstm_ae.train.parallel import encode_dataset, make_data_mesh, reconstruct_dataset

    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)

    def batch(b):
        return ae.Batch(rng.normal(size=(b, T, F)).astype(np.float32), rng.integers(1, T + 1, b).astype(np.int32))

    def maxdiff(a, b):
        return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def run(step, state, batches):
        losses = []
        for b in batches:
            state, m = step(state, b)
            losses.append(float(m["loss"]))
        return state, losses

    out: dict = {}
    opt = ae.make_optimizer(1e-2)
    b1, b2, b6 = batch(8), batch(8), batch(6)
    models = {name: ae.make_autoencoder(ae.lstm_encoder((4,)), dec, ae.linear(), features=F)
              for name, dec in [("repeat", ae.repeat((4,))), ("conditional", ae.conditional((4,), teacher_prob=0.5))]}
    refs = {}  # one single-device run per model, shared by its sharded variants (fewer compilations)
    for name, n_dev, fsdp in [("repeat", 8, None), ("conditional", 4, None), ("repeat", 8, 8)]:
        model = models[name]

        def fresh(model=model):  # a sharded step donates (and may reuse) the buffers it was given
            return ae.create_train_state(model, opt, jax.random.key(1))

        if name not in refs:
            refs[name] = run(ae.make_train_step(model, opt, donate=False), fresh(), [b1, b2])
        ref_state, ref_losses = refs[name]
        # conditional: jax.make_mesh's Explicit axes, which the step turns into Auto ones.
        mesh = jax.make_mesh((n_dev,), ("data",)) if name == "conditional" else make_data_mesh(n_dev)
        step = ae.make_train_step(model, opt, mesh=mesh, fsdp_min_size=fsdp)
        state, losses = run(step, fresh(), [b1, b2])
        specs = [a.sharding.spec for a in jax.tree.leaves(state.params)]
        rec = {
            "params": maxdiff(state.params, ref_state.params),
            "opt_state": maxdiff(state.opt_state, ref_state.opt_state),
            "loss": max(abs(a - b) for a, b in zip(losses, ref_losses)),
            "step": int(np.asarray(state.step)),
            "n_leaves": len(specs),
            "n_split": sum(s != jax.sharding.PartitionSpec() for s in specs),
        }
        if name == "conditional":
            # 6 rows over 4 devices: padded to 8 with length-0 rows.
            ref6, ref6_losses = run(ae.make_train_step(model, opt, donate=False), fresh(), [b6])
            pad6, pad6_losses = run(step, fresh(), [b6])
            rec["padded_params"] = maxdiff(pad6.params, ref6.params)
            rec["padded_loss"] = abs(pad6_losses[0] - ref6_losses[0])
            ev = ae.make_eval_step(model, mesh=make_data_mesh(n_dev))(ref6.params, b6)
            ev_ref = ae.make_eval_step(model)(ref6.params, b6)
            rec["eval_loss"] = abs(float(ev["loss"]) - float(ev_ref["loss"]))
            rec["eval_n_steps"] = [int(ev["n_steps"]), int(ev_ref["n_steps"])]
        hlo = step.lower(fresh(), b1).compile().as_text()
        rec["collectives"] = {op: hlo.count(f" {op}(") for op in ("all-gather", "all-to-all", "all-reduce")}
        rec["cache_size"] = step.cache_size()  # after 2 steps (+1 padded step for conditional)
        out[f"{name}/{n_dev}" + ("/fsdp" if fsdp else "")] = rec
        if name == "repeat" and fsdp is None:
            x = np.concatenate([b1.x, b2.x, b6.x[:3]])  # 19 rows: 3 batches of 8, the last padded
            lengths = np.concatenate([b1.lengths, b2.lengths, b6.lengths[:3]])
            z_ref = np.asarray(model.encode(ref_state.params, x, lengths))
            # Streamed from disk: a memmap is read one batch of rows at a time.
            with tempfile.TemporaryDirectory() as tmp:
                np.save(Path(tmp) / "x.npy", x)
                x_disk = np.load(Path(tmp) / "x.npy", mmap_mode="r")
                z8 = encode_dataset(model, ref_state.params, x_disk, lengths, mesh=make_data_mesh(8), batch_size=8)
                del x_disk
            r_ref = np.asarray(model.reconstruct(ref_state.params, x, lengths))
            r4 = reconstruct_dataset(model, ref_state.params, x, lengths, mesh=make_data_mesh(4), batch_size=8)
            out["latents"] = {
                "identical": bool(np.array_equal(z8, z_ref)), "maxdiff": float(np.max(np.abs(z8 - z_ref))),
                "shape": list(z8.shape), "reconstruct_maxdiff": float(np.max(np.abs(r4 - r_ref))),
                "reconstruct_shape": list(r4.shape),
            }
    # Denoising on the mesh: the corruption is drawn inside the sharded step;
    # JAX's partitionable threefry gives each row the noise it gets on one device.
    model, noise = models["repeat"], ae.gaussian_noise(0.3)
    fresh = lambda: ae.create_train_state(model, opt, jax.random.key(1))  # noqa: E731
    ref_state, ref_losses = run(ae.make_train_step(model, opt, donate=False, corrupt=noise), fresh(), [b1, b2])
    plain_state, _ = refs["repeat"]
    state, losses = run(ae.make_train_step(model, opt, mesh=make_data_mesh(8), corrupt=noise), fresh(), [b1, b2])
    out["repeat/8/denoise"] = {
        "params": maxdiff(state.params, ref_state.params),
        "loss": max(abs(a - b) for a, b in zip(losses, ref_losses)),
        "vs_plain": maxdiff(ref_state.params, plain_state.params),
    }
    return out


@pytest.fixture(scope="module")
def forced8():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               # -O0 codegen: about a third less compile time; reference and sharded runs share it.
               XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, "worker"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


TOL = 2e-6  # float32: the sharded step only reorders additions in reductions


@pytest.mark.parametrize("case", ["repeat/8", "conditional/4"])
def test_sharded_step_equals_single_device(forced8, case):
    rec = forced8[case]
    assert rec["step"] == 2
    assert rec["params"] < TOL and rec["opt_state"] < TOL and rec["loss"] < TOL, rec
    assert rec["n_split"] == 0, "the state is replicated by default"


@pytest.mark.parametrize("case", ["repeat/8", "conditional/4"])
def test_each_device_runs_its_own_rows(forced8, case):
    """Under shard_map the recurrent loop runs on each device's rows: no
    activation is gathered, only the gradients (and the step's scalars) are
    summed over the devices."""
    ops = forced8[case]["collectives"]
    assert ops["all-gather"] == 0 and ops["all-to-all"] == 0, ops
    assert ops["all-reduce"] >= 1, ops


def test_denoising_step_on_a_mesh_equals_single_device(forced8):
    rec = forced8["repeat/8/denoise"]
    assert rec["params"] < TOL and rec["loss"] < TOL, rec
    assert rec["vs_plain"] > 1e-4, rec  # the noise really changed the training


def test_padding_with_length0_rows_equals_unpadded_step(forced8):
    rec = forced8["conditional/4"]
    assert rec["padded_params"] < TOL and rec["padded_loss"] < TOL, rec
    assert rec["eval_loss"] < TOL and rec["eval_n_steps"][0] == rec["eval_n_steps"][1], rec


def test_no_retrace_between_steps(forced8):
    # Two steps, then a 6-row batch padded to the same 8 rows: one compilation.
    assert forced8["repeat/8"]["cache_size"] == 1
    assert forced8["conditional/4"]["cache_size"] == 1


def test_fsdp_sharded_params_same_values(forced8):
    rec = forced8["repeat/8/fsdp"]
    assert rec["params"] < TOL and rec["opt_state"] < TOL and rec["loss"] < TOL, rec
    assert rec["n_split"] >= 3, rec  # leaves of >= 8 elements really are split over "data"


def test_streamed_latents_identical(forced8):
    rec = forced8["latents"]
    assert rec["shape"] == [19, 4] and rec["reconstruct_shape"] == [19, T, F]
    # Each row's latent does not depend on how the batch was split. Bitwise equality
    # holds at XLA's default codegen here, but per-device batch shapes may change the
    # rounding of the GEMMs, so float32 rounding is what is promised.
    assert rec["maxdiff"] <= 1e-6, rec
    assert rec["reconstruct_maxdiff"] < TOL


def test_two_processes_agree(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multihost_cpu.py"), "--out", str(tmp_path), "--timeout", "240"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_backend_optimization_level=0"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert [w["processes"] for w in summary["workers"]] == [2, 2]
    assert [w["devices"] for w in summary["workers"]] == [4, 4]
    assert [w["steps"] for w in summary["workers"]] == [3, 3]  # 2 steps on own rows, 1 on a shared batch
    # Check the saved parameters here, not only the script's verdict.
    got = [np.load(tmp_path / f"proc{i}.npz") for i in range(2)]
    ref = np.load(tmp_path / "reference.npz")
    keys = [k for k in ref.files if k != "z" and not k.startswith("fsdp_")]
    assert keys and all(np.array_equal(got[0][k], got[1][k]) for k in keys)
    # FSDP over both processes: leaves really split, gathered values = one plain step.
    assert all(w["fsdp_split_leaves"] >= 3 for w in summary["workers"])
    fsdp_keys = [k for k in ref.files if k.startswith("fsdp_")]
    for g in got:
        for k in fsdp_keys:
            np.testing.assert_allclose(g[k], ref[k], atol=TOL, rtol=0)
    for k in keys:
        np.testing.assert_allclose(got[0][k], ref[k], atol=TOL, rtol=0)
    z = np.concatenate([g["z"] for g in got])
    np.testing.assert_allclose(z, ref["z"][np.concatenate([g["rows"] for g in got])], atol=TOL, rtol=0)
    for g in got:  # global_rows=True: every process gets every row's latent
        np.testing.assert_allclose(g["z_all"], ref["z"], atol=TOL, rtol=0)
    for w in summary["workers"]:
        np.testing.assert_allclose(w["losses"], summary["reference_losses"], atol=TOL, rtol=0)
        assert abs(w["eval_loss"] - summary["reference_eval_loss"]) < TOL
        assert abs(w["eval_loss_sharded"] - summary["reference_eval_loss"]) < TOL


def test_ask_for_cpu_devices_before_and_after_jax_starts():
    """Before the first computation it gives the process N CPU devices (what
    ``--devices N`` does on a CPU machine); afterwards it changes nothing."""
    code = (
        "import jax, jax_lstm_ae as ae\n"
        "ok = ae.ask_for_cpu_devices(2)\n"
        "n = len(jax.devices('cpu'))\n"
        "print(ok, n, ae.ask_for_cpu_devices(3), len(jax.devices('cpu')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "2", "False", "2"]


def _two_cores() -> set[int]:
    """At most two of the cores this process may use (the affinity the fresh processes below get)."""
    return set(sorted(os.sched_getaffinity(0))[:2])


_ALL_CORES = """
import os, sys, jax, optax, jax_lstm_ae as la
os.sched_setaffinity(0, {cores})
mesh = la.use_all_cores()
n = 0 if mesh is None else mesh.devices.size
model = la.make_autoencoder(la.lstm_encoder([4]), la.repeat([4]), la.linear(), features=2)
opt = optax.adam(1e-3)
state = la.create_train_state(model, opt, jax.random.PRNGKey(0))
batch = la.Batch(jax.numpy.ones((5, 3, 2)), jax.numpy.full((5,), 3))
state, metrics = la.make_train_step(model, opt, mesh=mesh)(state, batch)
capped = la.train.all_cores_mesh(max_devices=1)  # e.g. a batch of one row: no device left with padding only
print(la.train.cpu_cores(), len(jax.devices("cpu")), n, float(metrics["loss"]) > 0, capped)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_use_all_cores_gives_one_cpu_device_per_core_and_a_mesh():
    """In a fresh process limited to k cores: k CPU devices and a k-device
    mesh the train step takes (None for one core); an odd batch is padded."""
    cores = _two_cores()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", _ALL_CORES.format(cores=sorted(cores))], env=env,
                         capture_output=True, text=True, check=True)
    k = len(cores)
    assert out.stdout.split() == [str(k), str(k), str(k if k > 1 else 0), "True", "None"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_cli_splits_batches_over_every_core_by_default(tmp_path):
    """`jax-lstm-ae train` with no --devices: one CPU device per core; --devices 1: one device."""
    cores = _two_cores()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    lines = []
    for extra in ([], ["--devices", "1"]):
        argv = ["jax-lstm-ae", "train", "--out", str(tmp_path / f"run{len(extra)}"), "--epochs", "1", *extra]
        # The child limits itself to the cores (a preexec_fn would fork this multithreaded process).
        code = (f"import os, runpy, sys; os.sched_setaffinity(0, {sorted(cores)}); sys.argv = {argv!r}; "
                f"runpy.run_module('jax_lstm_ae', run_name='__main__')")
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        lines.append(res.stderr.splitlines()[0])
    first = f"each batch split over {len(cores)} CPU devices" if len(cores) > 1 else "one device"
    assert lines[0].endswith(first + (" (--devices 1: one)" if len(cores) > 1 else "")), lines[0]
    assert lines[1].endswith("; one device"), lines[1]


def test_use_all_cores_after_jax_started_warns_and_keeps_one_device():
    """This pytest process started JAX with one CPU device: nothing changes,
    and the call says why (when there are more cores to use)."""
    if len(jax.devices("cpu")) > 1:
        pytest.skip("this process already has several CPU devices")
    if ae.train.cpu_cores() > 1:
        with pytest.warns(UserWarning, match="already started with 1 CPU device"):
            assert ae.use_all_cores() is None
    else:
        assert ae.use_all_cores() is None
    a = argparse.ArgumentParser()
    add_parallel_args(a)
    assert setup_parallel(a.parse_args([])) is None  # the CLI's auto: the same, silently


# ----------------------------------------------------------------- one device, no subprocess
def test_pad_batch_adds_zero_rows_of_length_zero():
    b = ae.Batch(np.arange(3 * 2 * 1, dtype=np.float32).reshape(3, 2, 1) + 1, np.array([2, 1, 2], np.int32))
    p = pad_batch(b, 4)
    assert p.x.shape == (4, 2, 1) and p.lengths.tolist() == [2, 1, 2, 0]
    np.testing.assert_array_equal(p.x[:3], b.x)
    assert not p.x[3].any()
    assert pad_batch(b, 3) is b


def test_state_shardings_fsdp_rule():
    mesh = make_data_mesh(1)
    tree = {"w": np.zeros((3, 8)), "b": np.zeros((8,)), "k": jax.random.key(0)}
    sh = state_shardings(tree, mesh, fsdp_min_size=10)
    assert sh["w"].spec == jax.sharding.PartitionSpec(None, "data")  # largest divisible dim
    assert sh["b"].spec == jax.sharding.PartitionSpec()  # below the size threshold
    assert sh["k"].spec == jax.sharding.PartitionSpec()  # keys stay whole
    assert all(s.spec == jax.sharding.PartitionSpec() for s in jax.tree.leaves(state_shardings(tree, mesh)))


def test_clear_errors():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        make_data_mesh(jax.local_device_count() + 1)
    with pytest.raises(ValueError, match="positive number or 'all'"):
        make_data_mesh("some")
    model = ae.recurrent_autoencoder(F, 4)
    opt = ae.make_optimizer()
    other = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="name one axis 'data'"):
        ae.make_train_step(model, opt, mesh=other)
    with pytest.raises(ValueError, match="pass mesh="):
        ae.make_train_step(model, opt, fsdp_min_size=10)


def test_distributed_config_from_env_and_args(monkeypatch):
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(k, raising=False)
    assert distributed_config() is None
    assert initialize_distributed() is False  # nothing set: a plain single process
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert tuple(distributed_config()) == ("10.0.0.1:1234", 4, 3, False)
    assert tuple(distributed_config("h:1", 2, 0)) == ("h:1", 2, 0, False)  # flags win
    monkeypatch.delenv("JAX_PROCESS_ID")
    with pytest.raises(ValueError, match="missing: process id"):
        distributed_config()
    with pytest.raises(ValueError, match="host:port"):
        distributed_config("nohost", 2, 0)
    with pytest.raises(ValueError, match="0 <= process_id"):
        distributed_config("h:1", 2, 2)
    monkeypatch.setenv("JAX_PROCESS_ID", "x")
    with pytest.raises(ValueError, match="JAX_PROCESS_ID='x' must be an integer"):
        distributed_config()


def test_process_rows_cover_every_row_once():
    for n, k in [(10, 3), (16, 2), (2, 4)]:
        rows = [np.arange(n)[process_rows(n, p, k)] for p in range(k)]
        np.testing.assert_array_equal(np.concatenate(rows), np.arange(n))
        assert max(map(len, rows)) - min(map(len, rows)) <= 1
    assert process_rows(7) == slice(0, 7)  # one process holds everything


def test_cli_flags():
    ap = argparse.ArgumentParser()
    add_parallel_args(ap)
    a = ap.parse_args([])
    assert a.devices == "auto" and setup_parallel(a) is None  # one device here: the plain path
    assert ap.parse_args(["--devices", "all"]).devices == "all"
    a = ap.parse_args(["--devices", "1"])
    assert a.devices == 1 and setup_parallel(a) is None
    mesh = setup_parallel(ap.parse_args(["--devices", "all"]))
    assert mesh.axis_names == ("data",) and mesh.devices.size == jax.device_count()
    with pytest.raises(SystemExit):
        ap.parse_args(["--devices", "0"])
    a = ap.parse_args(["--coordinator", "127.0.0.1:1", "--num-processes", "2"])
    with pytest.raises(ValueError, match="missing: process id"):
        setup_parallel(a)


def test_cli_subcommands_take_the_flags():
    from jax_lstm_ae.cli import devices as _parallel
    import importlib

    _cli = importlib.import_module("jax_lstm_ae.cli.main")  # the package's `main` attribute is the function

    parser = _cli.build_parser()
    for cmd in (["train", "--out", "r"], ["encode", "--run", "r", "--out", "z.npy"],
                ["reconstruct", "--run", "r", "--out", "r.npz"]):
        args = parser.parse_args(cmd + ["--devices", "all", "--coordinator", "h:1", "--num-processes", "2",
                                        "--process-id", "1"])
        assert (args.devices, args.coordinator, args.num_processes, args.process_id) == ("all", "h:1", 2, 1)
    args = parser.parse_args(["encode", "--run", "r", "--out", "z.npy"])
    _parallel.setup(args)  # the hook the CLI runs first: auto, and this process has one device: no mesh
    assert args.mesh is None and _parallel.fit_kwargs(args) == {}
    args.mesh = make_data_mesh()
    assert _parallel.fit_kwargs(args) == {"mesh": args.mesh, "step_kwargs": {"global_batch": False}}
    args.fsdp_min_size = 4096
    assert _parallel.fit_kwargs(args)["step_kwargs"] == {"global_batch": False, "fsdp_min_size": 4096}


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    print(json.dumps(_worker()))
