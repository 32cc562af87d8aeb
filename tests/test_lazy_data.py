"""Data bigger than memory: a .npy file read on demand (data.lazy) trains
through the one runner to the parameters of the same windows in memory,
is scored in chunks as in one go, and reads only the rows it is asked for."""

from pathlib import Path

import numpy as np
import pytest

from jax_lstm_ae.data import (DataError, Dataset, Normalizer, lazy_dataset, open_npy, sliding_windows,
                              train_val_split)
from jax_lstm_ae.data.batching import PERMUTE_MAX, FeistelOrder, batches, epoch_order
from jax_lstm_ae.data.lazy import RowsView
from jax_lstm_ae.nn.spec import ModelSpec
from jax_lstm_ae.train.runner import data_fingerprint, run_training
from jax_lstm_ae.train.spec import TrainSpec

T, F = 12, 3


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A random walk [400, 3] saved as float32 .npy; the path and the array."""
    rng = np.random.default_rng(0)
    s = (rng.normal(size=(400, F)).cumsum(0) + [0, 5, -3]).astype(np.float32)
    path = tmp_path_factory.mktemp("lazy") / "series.npy"
    np.save(path, s)
    return path, s


def _in_memory(s, window, stride):
    w, _ = sliding_windows(s, window, stride)
    return Dataset(w, np.full(len(w), window, np.int32))


@pytest.mark.parametrize("stride", [1, 5, 7])
def test_windows_equal_sliding_windows(series, stride):
    path, s = series
    x = open_npy(path, window=T, stride=stride)
    w, starts = sliding_windows(s, T, stride)
    assert x.shape == w.shape
    np.testing.assert_array_equal(np.asarray(x), w)
    idx = np.random.default_rng(1).permutation(len(w))[:9]  # scattered windows: one read each
    np.testing.assert_array_equal(x[idx], w[idx])
    np.testing.assert_array_equal(x[3:8], w[3:8])
    np.testing.assert_array_equal(x.starts(np.arange(len(w))), starts)
    np.testing.assert_array_equal(x.rows(4, 9)[np.array([0, 4])], w[[4, 8]])


@pytest.mark.parametrize("mode", ["zscore", "minmax"])
def test_chunked_statistics_equal_in_memory(series, mode, monkeypatch):
    """Statistics over every window's steps (a row once per window covering
    it), read in chunks smaller than the file, equal the in-memory fit."""
    import jax_lstm_ae.data.lazy as lazy

    monkeypatch.setattr(lazy, "SCAN_ROWS", 37)  # many chunks, none aligned to the windows
    path, s = series
    for stride in (1, 4):
        x = open_npy(path, window=T, stride=stride)
        mem = _in_memory(s, T, stride)
        a, b = 3, len(x) - 5
        want = Normalizer.fit(mem.take(np.arange(a, b)), mode)
        got = Normalizer.fit(lazy_dataset(x.rows(a, b)), mode)
        np.testing.assert_allclose(got.shift, want.shift, rtol=1e-6)
        np.testing.assert_allclose(got.scale, want.scale, rtol=1e-6)
        # The normalised view is what Normalizer.apply gives in memory, bit for bit.
        np.testing.assert_array_equal(np.asarray(want.apply(lazy_dataset(x.rows(a, b))).x),
                                      want.apply(mem.take(np.arange(a, b))).x)


def test_split_is_by_index_ranges(series):
    path, _ = series
    ds = lazy_dataset(open_npy(path, window=T, stride=2))
    train, val = train_val_split(ds, 0.25, seed=0)
    n_val = round(ds.n * 0.25)
    assert (train.n, val.n) == (ds.n - n_val, n_val)
    np.testing.assert_array_equal(np.asarray(val.x), np.asarray(ds.x)[ds.n - n_val:])
    assert train.x.lo == 0 and val.x.lo == train.n  # views: nothing read


def test_trains_to_the_parameters_of_the_same_windows_in_memory(series):
    """Same seed, same batches: a file read on demand and the windows in memory
    reach the same parameters (the runner's split, normaliser and fit)."""
    import jax

    path, s = series
    model = ModelSpec(features=F, embedding_dim=4, encoder={"hidden": (8,)}, decoder={"hidden": (8,)})
    spec = TrainSpec(batch_size=16, epochs=2, val_fraction=0.2, seed=3)
    lazy = run_training(model, spec, lazy_dataset(open_npy(path, window=T, stride=3)))
    mem = _in_memory(s, T, 3)
    n_train = lazy.train.n  # the lazy split: the first n_train windows train, the rest validate
    ref = run_training(model, spec, mem.take(np.arange(n_train)), val=mem.take(np.arange(n_train, mem.n)))
    assert int(lazy.state.step) == int(ref.state.step) == 2 * (n_train // 16)
    np.testing.assert_allclose(lazy.normalizer.shift, ref.normalizer.shift, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(lazy.state.params), jax.tree.leaves(ref.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    assert [h["val_loss"] for h in lazy.history] == pytest.approx([h["val_loss"] for h in ref.history], rel=1e-5)
    assert lazy.config["data"]["fingerprint"] == data_fingerprint(lazy_dataset(open_npy(path, window=T, stride=3)))


def test_batches_read_only_their_rows_and_defer(series, monkeypatch):
    """A batch reads its own windows only: at most B * T rows of a series,
    never the file; a deferred batch reads only the slice that is indexed."""
    path, _ = series
    x = open_npy(path, window=T, stride=1)
    read = []
    real = x.file.read
    monkeypatch.setattr(x.file, "read", lambda a, b: read.append(b - a) or real(a, b))
    b = next(batches(lazy_dataset(x), 8, 0))
    assert b.x.shape == (8, T, F) and sum(read) <= 8 * T
    read.clear()
    view = next(batches(lazy_dataset(x), 8, 0, defer=True)).x
    assert isinstance(view, RowsView) and not read
    padded = view.padded(10)
    part = padded[(slice(6, 10), slice(None), slice(None))]  # one process's rows: two real, two padding
    assert sum(read) <= 2 * T
    np.testing.assert_array_equal(part[:2], b.x[6:8])
    assert not part[2:].any()


def test_large_orders_are_permutations_computed_per_batch():
    assert isinstance(epoch_order(100, 0), np.ndarray)  # small sets: the order runs and resumes always had
    assert isinstance(epoch_order(PERMUTE_MAX + 1, 0), FeistelOrder)
    for n in (2, 1000, 4097):
        o = FeistelOrder(n, np.random.default_rng(n))
        np.testing.assert_array_equal(np.sort(o[0:n]), np.arange(n))
        np.testing.assert_array_equal(np.concatenate([o[0:n // 3], o[n // 3:n]]), o[0:n])
    big = FeistelOrder(10**9, np.random.default_rng(0))[0:4096]
    assert len(set(big.tolist())) == 4096 and big.min() >= 0 and big.max() < 10**9
    assert abs(big.mean() / 10**9 - 0.5) < 0.05  # spread over the whole range


def test_clear_errors(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((10, 2), np.complex64))
    np.save(tmp_path / "s.npy", np.zeros((10, 2), np.float32))
    np.save(tmp_path / "w4.npy", np.zeros((2, 3, 4, 5), np.float32))
    cases = [(tmp_path / "c.npy", {"window": 3}, "complex64 values"),
             (tmp_path / "s.npy", {"window": 11}, "window 11 is longer than the series \\(10 rows\\)"),
             (tmp_path / "w4.npy", {"window": 3}, "a series must be \\[R\\] or \\[R, F\\]"),
             (tmp_path / "w4.npy", {}, "expected windows of shape"),
             (tmp_path / "s.npy", {"stride": 2}, "needs --window"),
             (tmp_path / "missing.npy", {}, "no such file")]
    (tmp_path / "t.npy").write_bytes((tmp_path / "s.npy").read_bytes()[:-8])
    cases.append((tmp_path / "t.npy", {"window": 3}, "not a readable .npy file"))
    for path, kw, msg in cases:
        with pytest.raises(DataError, match=msg) as e:
            open_npy(path, **kw)
        assert "\n" not in str(e.value)
    s = np.ones((50, 2), np.float32)
    s[31, 1] = np.nan
    np.save(tmp_path / "nan.npy", s)
    with pytest.raises(DataError, match="row 31, feature 1 is nan"):
        Normalizer.fit(lazy_dataset(open_npy(tmp_path / "nan.npy", window=5)))


@pytest.fixture(scope="module")
def trained(series):
    path, _ = series
    model = ModelSpec(features=F, embedding_dim=4, encoder={"hidden": (8,)}, decoder={"hidden": (8,)})
    res = run_training(model, TrainSpec(batch_size=16, epochs=1, val_fraction=0.0, seed=0),
                       lazy_dataset(open_npy(path, window=T, stride=1)))
    return res


@pytest.mark.parametrize("method,level,stride", [("mahalanobis", "window", 1), ("mahalanobis", "step", 3),
                                                 ("mae", "step", 5), ("mse", "window", 16)])
def test_scoring_in_chunks_equals_scoring_in_one_go(series, trained, method, level, stride):
    """Window scores chunk by chunk, and point scores summed in a buffer one
    chunk long, equal apps.anomaly on every window at once."""
    from jax_lstm_ae.apps.anomaly import error_vectors, fit_scorer, points_from_windows, score_errors
    from jax_lstm_ae.apps.streaming import fit_scorer_sampled, point_scores, window_scores

    path, s = series
    model, params, norm = trained.model, trained.params, trained.normalizer
    x = norm.apply(lazy_dataset(open_npy(path, window=T, stride=stride))).x
    w, starts = sliding_windows(norm.apply(s), T, stride)
    err = error_vectors(model, params, w)
    scorer = fit_scorer(err, method=method, level=level)
    win, steps = score_errors(scorer, err)
    want = points_from_windows(steps if steps is not None else win, starts, len(s), window=T)
    got_scorer = fit_scorer_sampled(model, params, x, method=method, level=level)
    if scorer.gaussian is not None:
        np.testing.assert_allclose(got_scorer.gaussian.whiten, scorer.gaussian.whiten, rtol=1e-5, atol=1e-6)
    chunks = list(window_scores(model, params, x, got_scorer, chunk=7))
    assert [a for a, *_ in chunks] == list(range(0, len(w), 7))
    np.testing.assert_allclose(np.concatenate([c[1] for c in chunks]), win, rtol=1e-5, atol=1e-6)
    out = np.lib.format.open_memmap(path.parent / f"points_{method}_{stride}.npy", "w+", np.float32, (len(s),))
    got = point_scores(model, params, x, got_scorer, chunk=7, out=out)
    assert got is out
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # NaN where no window covers a row (stride > T)
    assert np.isnan(want).any() == (stride > T)
    sub = x.rows(5, 9)  # a view: the rows its windows span, scored by those windows alone
    part = point_scores(model, params, sub, got_scorer, chunk=3)
    lo, hi = sub.span()
    assert (lo, hi) == (int(starts[5]), int(starts[8]) + T) and part.shape == (hi - lo,)
    want_sub = points_from_windows((steps if steps is not None else win)[5:9], starts[5:9] - lo, hi - lo, window=T)
    np.testing.assert_allclose(part, want_sub, rtol=1e-5, atol=1e-6)


_RSS_CHILD = """
import sys
import numpy as np
from jax_lstm_ae.data import Normalizer, lazy_dataset, open_npy, train_val_split
from jax_lstm_ae.data.batching import batches
def peak():  # VmHWM: the peak resident memory since the last reset
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024
ds = lazy_dataset(open_npy(sys.argv[1], window=64, stride=1))
np.asarray(ds.x[0:1000]); ds.x.fingerprint()  # warm every code path once
open("/proc/self/clear_refs", "w").write("5")  # reset the peak: importing the package peaks higher
base = peak()
train, val = train_val_split(ds, 0.2)
norm = Normalizer.fit(train)  # reads every training row, in chunks
data = norm.apply(train)
for i, b in zip(range(50), batches(data, 64, 0, drop_last=True)):
    pass
fp = ds.x.fingerprint()
print(peak() - base, ds.n)
"""


def _write_series(path, rows: int, f: int = 8, chunk: int = 1 << 20):
    """A float32 series [rows, f] written in chunks (never whole in memory)."""
    out = np.lib.format.open_memmap(path, "w+", np.float32, (rows, f))
    rng = np.random.default_rng(0)
    for a in range(0, rows, chunk):
        out[a:a + chunk] = rng.normal(size=(min(chunk, rows - a), f))
    out.flush()
    del out


def test_resident_memory_does_not_grow_with_the_file(tmp_path):
    """Splitting, fitting the normaliser over every row, drawing batches and
    the fingerprint of a 64 MB and a 256 MB file raise the peak resident
    memory of a fresh process by the same amount, well below the smaller file."""
    import subprocess
    import sys

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident memory")
    grew = {}
    for mb in (64, 256):
        path = tmp_path / f"s{mb}.npy"
        _write_series(path, mb * 2**20 // 32)
        proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path)], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1])
        grew[mb] = int(proc.stdout.split()[0])
        path.unlink()
    print({mb: f"{g / 2**20:.1f} MB" for mb, g in grew.items()})
    assert grew[256] < 32 * 2**20 and grew[64] < 32 * 2**20  # the files: 64 and 256 MB
    assert grew[256] - grew[64] < 16 * 2**20


def test_cli_train_and_detect_with_mmap_equal_the_file_loaded(tmp_path, capsys):
    """`train --mmap` trains through the runner on the file read on demand
    (resumable: the sampled fingerprint matches); `detect --mmap` scores it
    in chunks to the point scores `detect` gives with the series loaded."""
    from jax_lstm_ae.cli.main import main

    t = np.arange(3000)
    s = np.stack([np.sin(t / 9), np.cos(t / 14)], 1).astype(np.float32)
    s[2000:2020] += 2.0
    np.save(tmp_path / "s.npy", s)
    cut = ["--data", tmp_path / "s.npy", "--window", 16, "--stride", 4, "--devices", 1, "--quiet"]
    run = tmp_path / "run"
    assert main([str(a) for a in ["train", *cut, "--mmap", "--epochs", 1, "--embedding-dim", 4, "--hidden", 8,
                                  "--out", run]]) == 0
    assert main([str(a) for a in ["train", "--resume", "--out", run, "--epochs", 2, "--devices", 1, "--quiet"]]) == 0
    capsys.readouterr()
    for name, extra in (("lazy", ["--mmap"]), ("loaded", [])):
        assert main([str(a) for a in ["detect", "--run", run, *cut, *extra, "--out", tmp_path / f"{name}.csv"]]) == 0
    out = capsys.readouterr().out
    lazy, loaded = (np.loadtxt(tmp_path / f"{n}.csv", delimiter=",", skiprows=1) for n in ("lazy", "loaded"))
    assert lazy.shape == loaded.shape == (3000, 3)
    np.testing.assert_allclose(lazy[:, 1], loaded[:, 1], rtol=1e-4)
    np.testing.assert_array_equal(lazy[:, 2], loaded[:, 2])
    assert lazy[2000:2020, 2].all() and "scorer fitted on 747 windows" in out


def test_cli_encode_with_mmap_equals_the_file_loaded(tmp_path, capsys, monkeypatch):
    """`encode --mmap` writes z chunk by chunk (chunks smaller than the file
    here) to the latents `encode` gives with the windows loaded."""
    import jax_lstm_ae.cli.arrays as arrays
    from jax_lstm_ae.cli.main import main

    s = np.random.default_rng(2).normal(size=(300, 2)).astype(np.float32)
    np.save(tmp_path / "s.npy", s)
    cut = ["--data", tmp_path / "s.npy", "--window", 10, "--stride", 3, "--devices", 1]
    run = tmp_path / "run"
    assert main([str(a) for a in ["train", *cut, "--mmap", "--epochs", 1, "--embedding-dim", 4, "--hidden", 8,
                                  "--quiet", "--out", run]]) == 0
    real = arrays._encode_lazy
    monkeypatch.setattr(arrays, "_encode_lazy", lambda *a, **kw: real(*a, chunk=16))
    assert main([str(a) for a in ["encode", "--run", run, *cut, "--mmap", "--out", tmp_path / "lazy.npy"]]) == 0
    assert main([str(a) for a in ["encode", "--run", run, *cut, "--out", tmp_path / "loaded.npy"]]) == 0
    lazy, loaded = np.load(tmp_path / "lazy.npy"), np.load(tmp_path / "loaded.npy")
    assert lazy.shape == loaded.shape == (98, 4) and lazy.dtype == np.float32
    np.testing.assert_allclose(lazy, loaded, rtol=1e-5, atol=1e-6)
    assert "read and written 16 at a time" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.partial"))
    code = main([str(a) for a in ["reconstruct", "--run", run, *cut, "--mmap", "--out", tmp_path / "r.npy"]])
    err = capsys.readouterr().err
    assert code != 0 and "does not take --mmap" in err and len(err.strip().splitlines()) == 1


def test_cli_mmap_errors_are_one_line(tmp_path, capsys):
    from jax_lstm_ae.cli.main import main

    np.save(tmp_path / "s.npy", np.zeros((50, 2), np.float32))
    np.savetxt(tmp_path / "s.csv", np.zeros((50, 2)))
    for argv, msg in (([tmp_path / "s.npy", "--window", 64], "window 64 is longer than the series (50 rows)"),
                      ([tmp_path / "s.csv", "--window", 8], "--mmap reads a .npy file"),
                      ([tmp_path / "s.npy", "--window", 8, "--columns", 1], "drop --columns")):
        code = main([str(a) for a in ["train", "--data", *argv, "--mmap", "--out", tmp_path / "r", "--devices", 1]])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code != 0 and len(lines) == 1 and msg in lines[0], err


# ----------------------------------------------------------------- two processes
MP_MODEL = dict(features=F, embedding_dim=4, encoder={"hidden": (8,)}, decoder={"hidden": (8,)})
MP_SPEC = dict(batch_size=16, epochs=2, val_fraction=0.25, seed=1)


def _mp_worker(path: str, out: str) -> None:
    """One of two processes: the runner on the file read on demand, each batch
    split over both processes' devices; counts the windows this process reads."""
    import json
    from pathlib import Path

    from jax_lstm_ae.train.distributed import initialize_distributed

    assert initialize_distributed(timeout_s=120)
    import jax

    from jax_lstm_ae.data.lazy import LazyWindows
    from jax_lstm_ae.train.parallel import make_data_mesh, to_host

    read, parts = [0], []
    real_read, real_moments = LazyWindows._read, LazyWindows.moments

    def counting(self, idx):
        read[0] += np.asarray(idx).size
        return real_read(self, idx)

    def moments(self, part=(0, 1)):
        parts.append(list(part))
        return real_moments(self, part)

    LazyWindows._read, LazyWindows.moments = counting, moments
    res = run_training(ModelSpec(**MP_MODEL), TrainSpec(**MP_SPEC), lazy_dataset(open_npy(path, window=T, stride=2)),
                       mesh=make_data_mesh(), step_kwargs={"global_batch": True})
    pid = jax.process_index()
    leaves = [np.asarray(a) for a in jax.tree.leaves(to_host(res.state.params))]
    np.savez(Path(out) / f"proc{pid}.npz", *leaves)
    (Path(out) / f"proc{pid}.json").write_text(json.dumps({
        "read": read[0], "parts": parts, "steps": int(res.state.step.addressable_data(0)),
        "shift": res.normalizer.shift.tolist(), "val_loss": [h["val_loss"] for h in res.history]}))
    jax.distributed.shutdown()


def test_two_processes_each_read_their_own_rows(series, tmp_path):
    """Two processes train on the file together: each scans only its block of
    rows for the normaliser and reads only the rows of each global batch it
    places (about half), and both reach the one-process parameters."""
    import json
    import os
    import socket
    import subprocess
    import sys

    import jax

    path, _ = series
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid),
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        procs.append(subprocess.Popen([sys.executable, __file__, "worker", str(path), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    ref = run_training(ModelSpec(**MP_MODEL), TrainSpec(**MP_SPEC), lazy_dataset(open_npy(path, window=T, stride=2)))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    n_train, n_val = ref.train.n, ref.val.n
    per_epoch = (n_train // 16) * 16 + n_val  # windows a whole batch schedule and validation read
    for pid in range(2):
        rec = json.loads((tmp_path / f"proc{pid}.json").read_text())
        assert rec["parts"] == [[pid, 2]]  # the normaliser: this process's block of rows only
        assert rec["steps"] == int(ref.state.step)
        # two epochs of its half of every batch (one process reading all would read 2 * per_epoch)
        assert per_epoch - 32 <= rec["read"] <= per_epoch + 32
        np.testing.assert_allclose(rec["shift"], ref.normalizer.shift, rtol=1e-6)
        assert rec["val_loss"] == pytest.approx([h["val_loss"] for h in ref.history], rel=1e-5)
        got = np.load(tmp_path / f"proc{pid}.npz")
        for i, want in enumerate(jax.tree.leaves(ref.state.params)):
            np.testing.assert_allclose(got[f"arr_{i}"], np.asarray(want), atol=1e-5, rtol=1e-5)


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "worker":
        _mp_worker(sys.argv[2], sys.argv[3])
