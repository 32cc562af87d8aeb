"""Data pipeline: every loader on files written here, the real data files when
present, padding, normalisation, windows, batches, splits, synthetic sets."""

from pathlib import Path

import jax
import numpy as np
import pytest

from jax_lstm_ae.data import (
    DataError,
    Dataset,
    Normalizer,
    batches,
    from_arrays,
    load_sequences,
    load_series,
    pad_sequences,
    sliding_windows,
    synthetic,
    train_val_split,
    windows_to_points,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------ padding
def test_pad_sequences_post_and_pre():
    seqs = [np.array([1.0, 2.0, 3.0]), np.array([4.0]), np.array([[5.0], [6.0]])]
    x, lengths = pad_sequences(seqs, "post")
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    np.testing.assert_array_equal(x[..., 0], [[1, 2, 3], [4, 0, 0], [5, 6, 0]])
    x, lengths = pad_sequences(seqs, "pre")
    np.testing.assert_array_equal(x[..., 0], [[1, 2, 3], [0, 0, 4], [0, 5, 6]])
    x, lengths = pad_sequences(seqs, "post", maxlen=2)  # keeps the last 2 steps
    np.testing.assert_array_equal(x[..., 0], [[2, 3], [4, 0], [5, 6]])
    np.testing.assert_array_equal(lengths, [2, 1, 2])


def test_from_arrays_variable_length_multivariate():
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(t, 2)) for t in (5, 2, 7)]
    ds = from_arrays(seqs, labels=[0, 1, 0])
    assert ds.x.shape == (3, 7, 2) and ds.x.dtype == np.float32
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(ds.x[i, : len(s)], s, rtol=1e-6)
        assert np.all(ds.x[i, len(s) :] == 0)
    np.testing.assert_array_equal(ds.labels, [0, 1, 0])
    with pytest.raises(DataError, match="sequence 1 has 3 features"):
        from_arrays([np.zeros((2, 2)), np.zeros((2, 3))])
    ds = from_arrays([np.zeros(2), np.zeros(0)])  # an empty sequence is kept, with length 0
    np.testing.assert_array_equal(ds.lengths, [2, 0])


# ------------------------------------------------------------------ text loaders
def test_ucr_txt(tmp_path):
    p = _write(tmp_path, "u.txt", "  1.0000e+00  0.5  -1.5  2.0\n  2.0  3  4  5\n\n")
    ds = load_sequences(p)
    assert ds.x.shape == (2, 3, 1)
    np.testing.assert_array_equal(ds.x[..., 0], [[0.5, -1.5, 2.0], [3, 4, 5]])
    np.testing.assert_array_equal(ds.lengths, [3, 3])
    np.testing.assert_array_equal(ds.labels, [1, 2])
    assert ds.labels.dtype == np.int64


def test_wide_csv_with_header_and_label(tmp_path):
    p = _write(tmp_path, "w.csv", "a,b,c,label\n1,2,3,0\n4,5,6,1\n")
    ds = load_sequences(p, label_column="label")
    np.testing.assert_array_equal(ds.x[..., 0], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(ds.labels, [0, 1])
    ds = load_sequences(p)  # no label column: every column is a step
    assert ds.x.shape == (2, 4, 1) and ds.labels is None


def test_long_csv_one_row_per_step(tmp_path):
    p = _write(tmp_path, "l.csv", "id,f1,f2,y\ns1,1,10,0\ns1,2,20,0\ns2,3,30,1\ns1,4,40,0\n")
    ds = load_sequences(p, label_column="y")
    assert ds.x.shape == (2, 3, 2)
    np.testing.assert_array_equal(ds.x[0], [[1, 10], [2, 20], [4, 40]])
    np.testing.assert_array_equal(ds.x[1], [[3, 30], [0, 0], [0, 0]])
    np.testing.assert_array_equal(ds.lengths, [3, 1])
    np.testing.assert_array_equal(ds.labels, [0, 1])
    ds = load_sequences(p, id_column=0, columns=["f2"])
    np.testing.assert_array_equal(ds.x[0, :, 0], [10, 20, 40])


def test_series_whitespace_crlf_and_comma(tmp_path):
    p = _write(tmp_path, "s.txt", "0.0\t -1.0\t 2.0\r\n0.1\t -1.5\t 2.5\r\n0.2\t -2.0\t 3.0")
    s = load_series(p, columns=[1, 2])
    np.testing.assert_array_equal(s, [[-1, 2], [-1.5, 2.5], [-2, 3]])
    p = _write(tmp_path, "s.csv", "t,x\n0,1.5\n1,2.5\n")
    np.testing.assert_array_equal(load_series(p, columns=["x"]), [[1.5], [2.5]])
    ds = load_sequences(p, columns=["x"], window=1)
    np.testing.assert_array_equal(ds.starts, [0, 1])


def test_npy_and_npz(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", x)
    ds = load_sequences(tmp_path / "a.npy")
    np.testing.assert_array_equal(ds.x[..., 0], x)
    np.testing.assert_array_equal(ds.lengths, [4, 4, 4])
    x3 = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=x3, lengths=np.array([5, 2]), labels=np.array([1, 0]))
    ds = load_sequences(tmp_path / "b.npz")
    np.testing.assert_array_equal(ds.x[0], x3[0])
    np.testing.assert_array_equal(ds.x[1, :2], x3[1, :2])
    assert np.all(ds.x[1, 2:] == 0)  # padding is zeroed whatever the file held
    np.testing.assert_array_equal(ds.labels, [1, 0])
    np.save(tmp_path / "s.npy", np.arange(10.0))
    np.testing.assert_array_equal(load_series(tmp_path / "s.npy")[:, 0], np.arange(10.0))


@pytest.mark.parametrize(
    "name, text, match",
    [
        ("e.txt", "", "empty"),
        ("b.txt", "\n\n  \n", "empty"),
        ("n.txt", "1 2 3\n1 nan 3\n", r"line 2, column 2 is 'nan'"),
        ("i.csv", "1,2\n3,inf\n", r"line 2, column 2 is 'inf'"),
        ("r.txt", "1 2 3\n1 2\n", r"line 2 has 2 columns but line 1 has 3"),
        ("c.csv", "a,b\n1,2\n3,x\n", r"line 3, column 2 holds 'x', which is not a number"),
    ],
)
def test_bad_files_say_where(tmp_path, name, text, match):
    p = _write(tmp_path, name, text)
    with pytest.raises(DataError, match=match):
        load_sequences(p)


def test_missing_file_and_bad_columns(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_sequences(tmp_path / "nope.txt")
    p = _write(tmp_path, "s.txt", "1 2\n3 4\n")
    with pytest.raises(DataError, match="column 5 but the file has 2 columns"):
        load_series(p, columns=[5])
    with pytest.raises(DataError, match="no header row"):
        load_series(p, columns=["x"])


# ------------------------------------------------------------------ windows
def test_sliding_windows_cover_every_point():
    s = np.arange(10.0)[:, None]
    w, starts = sliding_windows(s, 4, 3)
    np.testing.assert_array_equal(starts, [0, 3, 6])  # 6 + 4 == 10: no extra window
    w, starts = sliding_windows(s, 4, 4)
    np.testing.assert_array_equal(starts, [0, 4, 6])  # an extra window ends at the last row
    np.testing.assert_array_equal(w[:, :, 0], [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]])
    with pytest.raises(DataError, match="window 11 is longer than the series"):
        sliding_windows(s, 11, 1)


def test_windows_to_points_is_mean_of_covering_windows():
    rng = np.random.default_rng(0)
    _, starts = sliding_windows(np.zeros((23, 1)), 5, 3)
    scores = rng.normal(size=starts.shape)
    pts = windows_to_points(scores, starts, 5, 23)
    for i in range(23):
        cover = [v for s, v in zip(starts, scores) if s <= i < s + 5]
        np.testing.assert_allclose(pts[i], np.mean(cover))
    assert np.isnan(windows_to_points(scores[:1], starts[:1], 5, 7)[6])


# ------------------------------------------------------------------ normalisation
def test_normalizer_fits_valid_steps_only_and_inverts():
    rng = np.random.default_rng(1)
    seqs = [rng.normal(3.0, 2.0, size=(t, 2)) for t in (6, 3, 9)]
    ds = from_arrays(seqs)
    norm = Normalizer.fit(ds)
    v = np.concatenate(seqs)
    np.testing.assert_allclose(norm.shift, v.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.scale, v.std(0), rtol=1e-5)
    out = norm.apply(ds)
    valid = np.arange(9)[None, :] < ds.lengths[:, None]
    np.testing.assert_allclose(out.x[valid].mean(0), 0.0, atol=1e-5)
    assert np.all(out.x[~valid] == 0)  # padding stays zero
    back = norm.invert(out)
    np.testing.assert_allclose(back.x, ds.x, atol=1e-5)
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(again.apply(ds).x, out.x)
    mm = Normalizer.fit(ds, "minmax").apply(ds)
    np.testing.assert_allclose(mm.x[valid].min(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(mm.x[valid].max(0), 1.0, atol=1e-6)
    const = from_arrays([np.ones((3, 1))])
    np.testing.assert_array_equal(Normalizer.fit(const).apply(const).x, 0.0)  # no division by zero


# ------------------------------------------------------------------ batches and splits
def test_batches_are_deterministic_and_cover_the_set():
    ds = from_arrays([np.full((1 + i % 3,), float(i)) for i in range(10)])
    order = lambda key, **kw: [b.x[:, 0, 0].tolist() for b in batches(ds, 4, key, **kw)]  # noqa: E731
    a = order(7)
    assert a == order(7) and a != order(8)
    assert sorted(sum(a, [])) == list(range(10)) and [len(b) for b in a] == [4, 4, 2]
    assert [len(b) for b in order(7, drop_last=True)] == [4, 4]
    assert order(jax.random.PRNGKey(3)) == order(jax.random.PRNGKey(3))
    assert order(0, shuffle=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    b = next(batches(ds, 4, 0, shuffle=False))
    np.testing.assert_array_equal(b.lengths, [1, 2, 3, 1])


def test_train_val_split():
    ds = from_arrays([np.full((2,), float(i)) for i in range(20)])
    tr, va = train_val_split(ds, 0.25, seed=0)
    ids = lambda d: set(d.x[:, 0, 0].astype(int).tolist())  # noqa: E731
    assert va.n == 5 and tr.n == 15 and ids(tr) | ids(va) == set(range(20)) and not ids(tr) & ids(va)
    assert ids(train_val_split(ds, 0.25, seed=0)[1]) == ids(va)
    assert train_val_split(ds, 0.0)[1] is None


# ------------------------------------------------------------------ synthetic
def test_moving_one():
    ds = synthetic("moving_one", n=64, seed=1)
    assert ds.x.shape == (64, 10, 10)
    assert ds.lengths.min() >= 1 and ds.lengths.max() <= 10
    for x, n, up in zip(ds.x, ds.lengths, ds.labels):
        assert np.all(x[:n].sum(1) == 1) and np.all(x[n:] == 0)
        pos = x[:n].argmax(1)
        np.testing.assert_array_equal(np.diff(pos) % 10, (1 if up else 9))
    assert np.array_equal(synthetic("moving_one", n=64, seed=1).x, ds.x)


def test_sines():
    ds = synthetic("sines", n=200)
    assert ds.x.shape == (200, 32, 3) and np.all(ds.lengths == 32)
    assert 5 <= ds.labels.sum() <= 40
    normal = ds.x[ds.labels == 0]
    assert np.abs(normal).max() < 1.5 < np.abs(ds.x[ds.labels == 1]).max()
    with pytest.raises(DataError, match="unknown synthetic"):
        synthetic("nope")


# ------------------------------------------------------------------ real files
def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the ../shared/data folder beside the repo)")
    return path


def test_real_ecg5000_ucr():
    ds = load_sequences(_need(DATA / "ecg5000" / "ECG5000_TRAIN.txt"))
    assert ds.x.shape == (500, 140, 1)
    np.testing.assert_array_equal(np.bincount(ds.labels), [0, 292, 177, 10, 19, 2])
    np.testing.assert_allclose(ds.x[0, :2, 0], [-1.1252183e-01, -2.8272038e00], rtol=1e-6)
    # README: beats are z-normalised one by one.
    np.testing.assert_allclose(ds.x[:, :, 0].mean(1), 0.0, atol=1e-3)


@pytest.mark.parametrize(
    "name, cols, rows, first",
    [
        ("chfdb_chf13_45590.txt", [1, 2], 3750, [-1.965, 0.075]),
        ("xmitdb_x108_0.txt", [1, 2], 5400, None),
        ("TEK16.txt", None, 5000, [-0.22]),
    ],
)
def test_real_discords_series(name, cols, rows, first):
    path = _need(DATA / "discords" / name)
    s = load_series(path, columns=cols)
    # one row per non-empty line (the ECG files lack a final newline, so wc -l says one less)
    assert s.shape == (rows, len(cols) if cols else 1)
    assert rows == sum(1 for ln in path.read_text().splitlines() if ln.strip())
    if first is not None:
        np.testing.assert_allclose(s[0], first, rtol=1e-6)
    ds = load_sequences(path, columns=cols, window=128, stride=64)
    assert isinstance(ds, Dataset) and ds.x.shape[1:] == (128, s.shape[1])
    np.testing.assert_array_equal(ds.x[3], s[ds.starts[3] : ds.starts[3] + 128])
    assert ds.starts[-1] == rows - 128
