"""Every file format read defensively: each bad file gives a DataError that names
the file, says what is wrong and what to do, and leaves the file as it was.

One row per bad file: (id, file name, how to write it, which reader, what the
message must say, the hint it must give). No JAX here: NumPy only, so each case
takes milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from jax_lstm_ae.data import DataError, Dataset, Normalizer, count_empty, from_arrays, load_sequences, load_series, read_ts


# ------------------------------------------------------------------ writers (each returns the file's bytes)
def _npy(arr, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def _npz(compressed=False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


_GOOD = np.arange(24, dtype=np.float64).reshape(3, 4, 2)


def _flip_inside_member(data: bytes) -> bytes:
    """Corrupt the first member's data bytes (past its local header) without touching the zip's directory."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    mid = start + info.compress_size // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 8]) + data[mid + 8 :]


_TS_HEAD = "@problemName p\n@univariate true\n@classLabel true a b\n@data\n"

# (id, name, bytes or text, reader, must say, hint)
CASES = [
    # --- .npz / .npy: damaged
    ("npz-truncated", "x.npz", _npz(x=_GOOD)[:200], "seq", "not a readable NumPy file (truncated or corrupt: BadZipFile)",
     "write it again with numpy.savez"),
    ("npz-corrupt-stored", "x.npz", _flip_inside_member(_npz(x=_GOOD)), "seq", "truncated or corrupt", "numpy.savez"),
    ("npz-corrupt-deflated", "x.npz", _flip_inside_member(_npz(True, x=np.random.default_rng(0).normal(size=(20, 30)))),
     "seq", "truncated or corrupt", "numpy.savez"),
    ("npz-not-zip", "x.npz", b"PK\x03\x04 this is not really a zip archive", "seq", "truncated or corrupt", "numpy.savez"),
    ("npy-truncated-data", "x.npy", _npy(_GOOD)[:-10], "seq", "not a readable NumPy file", "write it again with numpy.save"),
    ("npy-truncated-header", "x.npy", _npy(_GOOD)[:20], "seq", "not a readable NumPy file", "numpy.save"),
    ("npy-not-numpy", "x.npy", b"1,2,3\n4,5,6\n", "seq", "not a NumPy file", "numpy.save, or give a text file"),
    ("npy-series-truncated", "s.npy", _npy(np.ones(100))[:-8], "series", "not a readable NumPy file", "numpy.save"),
    ("npz-series-truncated", "s.npz", _npz(x=np.ones(100))[:150], "series", "BadZipFile", "numpy.savez"),
    # --- empty
    ("npy-0-bytes", "x.npy", b"", "seq", "the file is empty", "numpy.save"),
    ("npz-0-bytes", "x.npz", b"", "seq", "the file is empty", "numpy.savez"),
    ("npy-0-bytes-series", "s.npy", b"", "series", "the file is empty", "numpy.save"),
    ("npz-no-arrays", "x.npz", _npz(), "seq", "holds no arrays", "numpy.savez(path, x=...)"),
    ("npz-every-length-0", "x.npz", _npz(x=np.zeros((3, 4)), lengths=np.zeros(3, int)), "seq",
     "has length 0; nothing to train on or score", "give at least one sequence with a step"),
    ("npy-no-sequences", "x.npy", _npy(np.zeros((0, 5))), "seq", "holds no values", "save at least one sequence"),
    ("npy-no-steps", "x.npy", _npy(np.zeros((3, 0, 2))), "seq", "holds no values", "save at least one sequence"),
    ("npy-empty-series", "s.npy", _npy(np.zeros(0)), "series", "the series is empty", "give at least one row"),
    # --- wrong dtype
    ("npy-strings", "x.npy", _npy(np.array([["1", "2"], ["3", "4"]])), "seq", "expected numbers", "save a numeric"),
    ("npy-bytes", "x.npy", _npy(np.array([[b"a", b"b"]])), "seq", "expected numbers", "save a numeric"),
    ("npy-object", "x.npy", _npy(np.array([[1.0, None]], dtype=object), allow_pickle=True), "seq",
     "holds Python objects", "save numeric arrays with numpy.save"),
    ("npz-object-labels", "x.npz", _npz(x=_GOOD, labels=np.array(["a", 1, None], dtype=object)), "seq",
     "array 'labels' holds Python objects", "numpy.savez"),
    ("npy-complex", "x.npy", _npy(np.ones((2, 3), complex)), "seq", "holds complex values", "give real numbers"),
    ("npy-datetime", "x.npy", _npy(np.array([["2020-01-01"]], dtype="datetime64[D]")), "seq", "expected numbers",
     "save a numeric"),
    ("npy-structured", "x.npy", _npy(np.zeros((2, 3), dtype=[("a", "f8"), ("b", "i4")])), "seq", "expected numbers",
     "save a numeric"),
    ("npy-complex-series", "s.npy", _npy(np.ones(5, complex)), "series", "complex", "give real numbers"),
    ("npz-string-lengths", "x.npz", _npz(x=_GOOD, lengths=np.array(["a", "b", "c"])), "seq", "lengths hold",
     "give whole numbers"),
    # --- wrong rank / shape
    ("npy-rank-1", "x.npy", _npy(np.ones(5)), "seq", "expected sequences of shape (N, T) or (N, T, F), got (5,)",
     "reshape the array"),
    ("npy-rank-4", "x.npy", _npy(np.ones((2, 2, 2, 2))), "seq", "got (2, 2, 2, 2)", "reshape the array"),
    ("npy-series-rank-3", "s.npy", _npy(_GOOD), "series", "a series must be [N_t] or [N_t, F]", "reshape the array"),
    ("npz-no-x", "x.npz", _npz(a=_GOOD, b=np.ones(3)), "seq", "needs one named 'x'", "save the sequences as x"),
    ("npz-lengths-shape", "x.npz", _npz(x=_GOOD, lengths=np.ones((3, 1))), "seq", "lengths must have shape (3,)",
     "give one length per sequence"),
    ("npz-labels-shape", "x.npz", _npz(x=_GOOD, labels=np.ones(4)), "seq", "labels must have shape (3,)",
     "give one label per sequence"),
    # --- non-finite and out of range
    ("npy-nan", "x.npy", _npy(np.array([[1.0, np.nan]])), "seq", "is nan", "remove or impute"),
    ("npy-inf", "x.npy", _npy(np.array([[1.0, -np.inf]])), "seq", "is -inf", "remove or impute"),
    ("npy-series-nan", "s.npy", _npy(np.array([1.0, np.nan])), "series", "is nan", "remove or impute"),
    ("npy-beyond-float32", "x.npy", _npy(np.array([[1.0, 1e39]])), "seq", "value 1e+39", "rescale the data"),
    ("npy-series-beyond-float32", "s.npy", _npy(np.array([1.0, -2e39])), "series", "beyond float32's range",
     "rescale the data"),
    ("npz-length-beyond-T", "x.npz", _npz(x=_GOOD, lengths=np.array([4, 5, 1])), "seq", "sequence 1 has length 5",
     "between 0 and T=4"),
    ("npz-negative-length", "x.npz", _npz(x=_GOOD, lengths=np.array([4, -1, 1])), "seq", "has length -1",
     "between 0 and T=4"),
    ("npz-fractional-length", "x.npz", _npz(x=_GOOD, lengths=np.array([4, 2.5, 1])), "seq", "has length 2.5",
     "whole numbers"),
    ("npz-huge-length", "x.npz", _npz(x=_GOOD, lengths=np.array([4, 2**32 + 2, 1])), "seq", "has length 4294967298",
     "between 0 and T=4"),
    # --- text tables: empty, damaged, bad cells
    ("csv-0-bytes", "x.csv", "", "seq", "the file is empty", "give a file with one row"),
    ("txt-0-bytes", "x.txt", "", "seq", "the file is empty", "give a file with one row"),
    ("txt-only-comments", "x.txt", "# nothing here\n\n   \n", "seq", "the file is empty", "give a file with one row"),
    ("csv-header-only", "x.csv", "a,b,c\n", "seq", "a header but no data rows", "add the data below the header"),
    ("long-header-only", "x.csv", "id,a,b\n", "seq", "a header but no data rows", "add the data below the header"),
    ("series-0-bytes", "s.txt", "", "series", "the file is empty", "give a file with one row"),
    ("series-header-only", "s.csv", "time,value\n", "series", "a header but no data rows", "add the data"),
    ("csv-text-cell", "x.csv", "1,2\n3,abc\n", "seq", "holds 'abc', which is not a number", "plain decimal number"),
    ("csv-nan-cell", "x.csv", "1,2\n3,nan\n", "seq", "not finite", "remove or impute"),
    ("csv-beyond-float32", "x.csv", "1,2\n3,1e39\n", "seq", "beyond float32's range", "rescale the data"),
    ("series-beyond-float32", "s.txt", "1\n-1e39\n", "series", "beyond float32's range", "rescale the data"),
    ("long-beyond-float32", "x.csv", "id,a\n1,1\n1,1e39\n", "seq", "beyond float32's range", "rescale the data"),
    ("csv-ragged", "x.csv", "1,2,3\n4,5\n", "seq", "line 2 has 2 columns", "every row needs the same number"),
    ("csv-binary", "x.csv", b"\x00\x01\x02\xff\xfe\x00", "seq", "is not a UTF-8 text file", "save it as UTF-8"),
    ("csv-utf16", "x.csv", "1,2\n3,4\n".encode("utf-16"), "seq", "is not a UTF-8 text file", "save it as UTF-8"),
    ("series-binary", "s.txt", b"\x00\x00\x80?", "series", "is not a UTF-8 text file", "save it as UTF-8"),
    # --- .ts
    ("ts-0-bytes", "x.ts", "", "seq", "the file is empty", "@data, then one case per line"),
    ("ts-0-bytes-read_ts", "x.ts", "", "ts", "the file is empty", "@data, then one case per line"),
    ("ts-blank", "x.ts", "\n\n  \n", "ts", "the file is empty", "one case per line"),
    ("ts-header-no-data-line", "x.ts", "@problemName p\n@univariate true\n", "ts", "no @data line", "use --format"),
    ("ts-header-only", "x.ts", _TS_HEAD, "ts", "no cases after @data", "add at least one case"),
    ("ts-missing-value", "x.ts", _TS_HEAD + "1,?,3:a\n", "ts", "a missing value", "impute or drop"),
    ("ts-text-value", "x.ts", _TS_HEAD + "1,2j,3:a\n", "ts", "not a finite number", "fix the file"),
    ("ts-inf", "x.ts", _TS_HEAD + "1,inf,3:a\n", "ts", "not a finite number", "fix the file"),
    ("ts-beyond-float32", "x.ts", _TS_HEAD + "1,1e39,3:a\n", "ts", "beyond float32's range", "rescale the data"),
    ("ts-beyond-float32-load", "x.ts", _TS_HEAD + "1,-1e39,3:a\n", "seq", "value 2 is '-1e39'", "rescale the data"),
    ("ts-binary", "x.ts", b"@data\n\x00\x01", "ts", "is not a UTF-8 text file", "save the .ts file as UTF-8"),
    ("ts-unknown-class", "x.ts", _TS_HEAD + "1,2,3:c\n", "ts", "class 'c' is not among those @classLabel declares (a b)",
     "add it to the @classLabel line"),
]

_READERS = {"seq": load_sequences, "series": load_series, "ts": read_ts}


@pytest.mark.parametrize("name,content,reader,says,hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_gives_data_error_naming_file_and_hint(tmp_path, name, content, reader, says, hint):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as info:
        _READERS[reader](path)
    msg = str(info.value)
    assert name in msg, msg
    assert says in msg, msg
    assert hint in msg, msg
    assert "\n" not in msg and "Traceback" not in msg
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "reading the file changed it"


def test_the_table_is_well_formed():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert {c[3] for c in CASES} == set(_READERS)


# ------------------------------------------------------------------ valid files near the edges still load
def test_single_empty_sequences_among_others_are_allowed(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(_npz(x=_GOOD, lengths=np.array([4, 0, 2])))
    ds = load_sequences(path)
    assert count_empty(ds) == 1 and ds.lengths.tolist() == [4, 0, 2]
    assert np.all(ds.x[1] == 0) and np.all(ds.x[2, 2:] == 0)


def test_values_past_a_length_are_not_checked(tmp_path):
    x = _GOOD.copy()
    x[0, 3, 0] = np.nan  # padding may hold anything finite-checked or not: it is zeroed
    path = tmp_path / "x.npz"
    path.write_bytes(_npz(x=x, lengths=np.array([3, 4, 4])))
    ds = load_sequences(path)
    assert np.isfinite(ds.x).all() and ds.x[0, 3, 0] == 0


def test_float32_extremes_and_other_dtypes_load(tmp_path):
    big = float(np.finfo(np.float32).max)
    for arr in (np.array([[big, -big]]), np.array([[1, 2]], np.int64), np.array([[True, False]]),
                np.array([[1, 2]], np.float16), np.array([[1, 2]], np.uint8)):
        path = tmp_path / "x.npy"
        path.write_bytes(_npy(arr))
        ds = load_sequences(path)
        np.testing.assert_array_equal(ds.x[..., 0], arr.astype(np.float32))
    path = tmp_path / "x.npz"
    path.write_bytes(_npz(True, x=_GOOD, labels=np.array(["a", "b", "a"])))
    ds = load_sequences(path)
    np.testing.assert_array_equal(ds.x, _GOOD.astype(np.float32))
    assert ds.labels.tolist() == ["a", "b", "a"]


# ------------------------------------------------------------------ normalisation that would overflow float32
def test_normalizer_refuses_statistics_beyond_float32():
    ds = from_arrays([np.array([3e38, -3e38, 3e38])])
    with pytest.raises(DataError, match=r"feature 0 has values up to \|x\| = 3e\+38.*minmax scale \(6e\+38\).*rescale"):
        Normalizer.fit(ds, "minmax")
    Normalizer.fit(ds)  # zscore: mean 1e38, std 2.8e38 fit float32


def test_normalizer_apply_refuses_values_that_overflow():
    norm = Normalizer.fit(from_arrays([np.array([0.0, 1e-7, 0.0, 2e-7])]))
    bad = from_arrays([np.array([1.0, 3e38])])
    with pytest.raises(DataError, match=r"feature 0 has values up to \|x\| = 3e\+38, which normalise to 3\.6\de\+45"):
        norm.apply(bad)
    with pytest.raises(DataError, match="feature 0.*rescale the data"):
        norm.apply(np.array([[1.0], [3e38]], np.float32))
    # padding past a length is never normalised, so a huge value there is no error
    padded = Dataset(np.array([[[1.0], [3e38]]], np.float32), np.array([1], np.int32))
    assert norm.apply(padded).x[0, 1, 0] == 0


def test_normalizer_apply_redoes_float32_overflow_in_float64():
    """x - shift overflows float32 though the normalised value is small: keep the float64 result."""
    train = from_arrays([np.array([-3.4e38, -3.4e38, -3.3e38])])
    norm = Normalizer.fit(train)
    out = norm.apply(from_arrays([np.array([3e38, 0.0])])).x[0, :, 0]
    want = (np.array([3e38, 0.0]) - np.float64(norm.shift[0])) / np.float64(norm.scale[0])
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_normalizer_unchanged_on_ordinary_data():
    rng = np.random.default_rng(0)
    ds = from_arrays([rng.normal(3, 2, size=(t, 2)) for t in (5, 7, 3)])
    for mode in ("zscore", "minmax", "none"):
        norm = Normalizer.fit(ds, mode)
        valid = (np.arange(ds.steps)[None, :] < ds.lengths[:, None])[..., None]
        old = np.where(valid, (ds.x - norm.shift) / norm.scale, 0.0).astype(np.float32)
        np.testing.assert_array_equal(norm.apply(ds).x, old)
        np.testing.assert_array_equal(norm.apply(ds.x), ((ds.x - norm.shift) / norm.scale).astype(np.float32))


def test_normalizer_refuses_data_with_no_steps():
    ds = Dataset(np.zeros((2, 3, 1), np.float32), np.zeros(2, np.int32))
    with pytest.raises(DataError, match="every sequence has length 0; there is nothing to fit"):
        Normalizer.fit(ds)


def test_from_arrays_refuses_values_beyond_float32():
    with pytest.raises(DataError, match=r"sequence 1, step 0, feature 0: value 1e\+39 is beyond float32's range.*rescale"):
        from_arrays([np.array([1.0]), np.array([1e39])])
