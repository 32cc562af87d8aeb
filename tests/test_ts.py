"""The sktime/aeon .ts reader: files written here (every header, ragged and
multivariate cases, time stamps, errors with their line and column), the
load_sequences and CLI hooks, and the archive sets in ../shared/data when present."""

from pathlib import Path

import numpy as np
import pytest

from jax_lstm_ae.data import FORMATS, DataError, load_sequences, load_ts, read_ts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ucr_uea"

UNIVARIATE = """#A comment line
@problemName Tiny
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true 1 2
@data
1.0,2.0,3.0,4.0:1
-1.5,0.5,2.5e1,4:2

0,0,0,1:2
"""

RAGGED = """@problemName Ragged
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true walk run
@data
1,2,3:4,5,6:walk
7:8:run
1.5,2.5:3.5,4.5:walk
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_univariate_equal_length_values_and_header(tmp_path):
    ts = read_ts(_write(tmp_path, "tiny.ts", UNIVARIATE))
    ds, h = ts.dataset, ts.header
    assert ds.x.shape == (3, 4, 1) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x[..., 0], [[1, 2, 3, 4], [-1.5, 0.5, 25, 4], [0, 0, 0, 1]])
    np.testing.assert_array_equal(ds.lengths, [4, 4, 4])
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, [1, 2, 2])
    assert h.problem_name == "Tiny" and h.univariate and h.equal_length and h.series_length == 4
    assert h.class_labels == ("1", "2") and h.missing is False and not h.timestamps


def test_multivariate_ragged_is_post_padded_with_lengths(tmp_path):
    ds = load_ts(_write(tmp_path, "ragged.ts", RAGGED))
    assert ds.x.shape == (3, 3, 2)
    np.testing.assert_array_equal(ds.lengths, [3, 1, 2])
    np.testing.assert_array_equal(ds.x[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(ds.x[1], [[7, 8], [0, 0], [0, 0]])  # zeros past the length
    np.testing.assert_array_equal(ds.x[2], [[1.5, 3.5], [2.5, 4.5], [0, 0]])
    assert ds.labels.tolist() == ["walk", "run", "walk"]  # string classes stay strings


def test_timestamps_keep_values_in_order(tmp_path):
    text = ("@problemName Stamped\n@timeStamps true\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"
            "(0,1.0),(1,2.0),(2,3.0):(0,10),(1,20),(2,30):a\n(2020-01-01 10:00,5),(2020-01-01 11:00,6):(0,7),(1,8):b\n")
    ds = load_ts(_write(tmp_path, "stamped.ts", text))
    np.testing.assert_array_equal(ds.lengths, [3, 2])
    np.testing.assert_array_equal(ds.x[0], [[1, 10], [2, 20], [3, 30]])
    np.testing.assert_array_equal(ds.x[1, :2], [[5, 7], [6, 8]])


def test_no_labels_and_regression_targets(tmp_path):
    ds = load_ts(_write(tmp_path, "nolab.ts", "@problemName U\n@univariate true\n@classLabel false\n@data\n1,2\n3,4,5\n"))
    assert ds.labels is None
    np.testing.assert_array_equal(ds.lengths, [2, 3])
    ds = load_ts(_write(tmp_path, "reg.ts", "@univariate true\n@targetLabel true\n@data\n1,2:0.5\n3,4:-2\n"))
    assert ds.labels.dtype == np.float64
    np.testing.assert_array_equal(ds.labels, [0.5, -2.0])


def test_header_is_case_insensitive_and_dimension_singular(tmp_path):
    text = "@problemname P\n@UNIVARIATE false\n@dimension 2\n@classlabel true x y\n@DATA\n1,2:3,4:x\n5,6:7,8:y\n"
    ds = load_ts(_write(tmp_path, "case.ts", text))
    assert ds.x.shape == (2, 2, 2)
    np.testing.assert_array_equal(ds.x[1], [[5, 7], [6, 8]])


@pytest.mark.parametrize(
    "body, message",
    [
        ("1.0,?,3.0:1\n", r"line 4, column 5 \(dimension 1, value 2\) is '\?', a missing value; impute"),
        ("1.0,2.0,3.0:1\n1,2, NaN:2\n", r"line 5, column 6 \(dimension 1, value 3\) is 'NaN', a missing value"),
        ("1.0,abc,3.0:1\n", r"line 4, dimension 1, value 2 is 'abc', which is not a finite number"),
        ("1.0,2.0:7\n", r"line 4: class '7' is not among those @classLabel declares \(1 2\)"),
        ("1.0,2.0\n", r"line 4 has no label"),
        ("1,2:3,4:1\n", r"line 4 has 2 dimensions but the header declares 1"),
    ],
)
def test_bad_cases_name_line_and_column(tmp_path, body, message):
    path = _write(tmp_path, "bad.ts", "@univariate true\n@classLabel true 1 2\n@data\n" + body)
    with pytest.raises(DataError, match=message):
        load_ts(path)


def test_multivariate_missing_value_column_counts_earlier_dimensions(tmp_path):
    path = _write(tmp_path, "mv.ts", "@univariate false\n@dimensions 2\n@classLabel true 1\n@data\n1,2:3,?:1\n")
    with pytest.raises(DataError, match=r"line 5, column 7 \(dimension 2, value 2\)"):
        load_ts(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("@univariate true\n1,2\n", "holds data before @data"),
        ("@univariate true\n@classLabel true 1\n", "no @data line"),
        ("@univariate maybe\n@data\n1\n", "@univariate must be true or false"),
        ("@seriesLength zero\n@data\n1\n", "@seriesLength must be a positive integer"),
        ("@colour blue\n@data\n1\n", "unknown header @colour"),
        ("@univariate true\n@data\n", "no cases after @data"),
        ("@univariate true\n@data\n1,2\n@missing false\n", "header @missing after @data"),
        ("@univariate true\n@equalLength true\n@data\n1,2\n1,2,3\n", "line 5 has 3 steps but line 4 has 2"),
        ("@univariate true\n@seriesLength 3\n@data\n1,2\n", "line 4 has 2 steps but @seriesLength says 3"),
        ("@univariate false\n@dimensions 2\n@data\n1,2:3\n", "dimensions have different lengths"),
        ("@univariate true\n@classLabel true\n@data\n1\n", "must list the class names"),
    ],
)
def test_bad_headers(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_ts(_write(tmp_path, "bad.ts", text))


def test_load_sequences_picks_ts_by_suffix_and_columns_pick_dimensions(tmp_path):
    assert "ts" in FORMATS
    path = _write(tmp_path, "ragged.ts", RAGGED)
    ds = load_sequences(path)
    np.testing.assert_array_equal(ds.lengths, [3, 1, 2])
    one = load_sequences(path, columns=[1])
    assert one.x.shape == (3, 3, 1)
    np.testing.assert_array_equal(one.x[..., 0], ds.x[..., 1])
    other = _write(tmp_path, "ragged.dat", RAGGED)  # another suffix needs format="ts"
    np.testing.assert_array_equal(load_sequences(other, format="ts").x, ds.x)
    with pytest.raises(DataError, match="asks for column 2 but the file has 2 columns"):
        load_sequences(path, columns=[2])


def test_cli_format_ts(tmp_path, capsys):
    from jax_lstm_ae.cli.main import main

    path = _write(tmp_path, "ragged.dat", RAGGED)
    out = tmp_path / "run"
    rc = main(["train", "--data", str(path), "--format", "ts", "--out", str(out), "--epochs", "1", "--quiet",
               "--embedding-dim", "4", "--val-fraction", "0"])
    assert rc == 0, capsys.readouterr().err
    cfg = (out / "config.json").read_text()
    assert '"format": "ts"' in cfg and '"features": 2' in cfg
    bad = _write(tmp_path, "miss.ts", "@univariate true\n@data\n1,?\n")
    rc = main(["encode", "--run", str(out), "--data", str(bad), "--out", str(tmp_path / "z.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("jax-lstm-ae: error: ") and "line 3, column 3" in err and err.count("\n") == 1


ARCHIVE = {  # name: (train N, test N, train T, test T, F, classes)
    "ArrowHead": (36, 175, 251, 251, 1, 3),
    "GunPoint": (50, 150, 150, 150, 1, 2),
    "ItalyPowerDemand": (67, 1029, 24, 24, 1, 2),
    "JapaneseVowels": (270, 370, 26, 29, 12, 9),
    "BasicMotions": (40, 40, 100, 100, 6, 4),
}


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data/ucr_uea is absent (the archive sets live beside the repo)")
@pytest.mark.parametrize("name", sorted(ARCHIVE))
def test_archive_sets(name):
    n_tr, n_te, t_tr, t_te, f, c = ARCHIVE[name]
    for split, n, t in (("TRAIN", n_tr, t_tr), ("TEST", n_te, t_te)):
        ts = read_ts(DATA / name / f"{name}_{split}.ts")
        ds = ts.dataset
        assert ds.x.shape == (n, t, f) and ts.header.problem_name == name
        assert len(np.unique(ds.labels)) == c
        assert set(map(str, ds.labels.tolist())) <= set(ts.header.class_labels)
        valid = np.arange(t)[None, :] < ds.lengths[:, None]
        assert np.all(ds.x[~valid] == 0) and ds.lengths.max() == t
    if name == "JapaneseVowels":  # 7-29 steps: ragged, padded with lengths
        assert ds.lengths.min() == 7
    # The first case's values, parsed independently of the reader.
    text = (DATA / name / f"{name}_TRAIN.ts").read_text(encoding="utf-8", errors="replace").splitlines()
    first = next(ln for ln in text[text.index(next(l for l in text if l.strip().lower() == "@data")) + 1:] if ln.strip())
    dims = first.split(":")[:-1]
    ref = np.array([[float(v) for v in d.split(",")] for d in dims]).T
    got = load_sequences(DATA / name / f"{name}_TRAIN.ts")
    np.testing.assert_allclose(got.x[0, : ref.shape[0]], ref, rtol=1e-6)
