"""The data shipped with the package: checksum, the examples' split, and `jax-lstm-ae data`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from jax_lstm_ae.cli.main import main as cli
from jax_lstm_ae.data import BUILTIN, DataError, builtin_file, ecg5000_files, load_sequences, stratified_split
from jax_lstm_ae.data import builtin as builtin_module

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ecg5000" / "ECG5000_TRAIN.txt"


def test_the_shipped_file_is_the_published_one():
    path = builtin_file("ecg5000")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BUILTIN["ecg5000"][1]
    ds = load_sequences(path)
    assert (ds.n, ds.steps, ds.features) == (500, 140, 1)
    assert np.bincount(ds.labels.astype(int))[1:].tolist() == [292, 177, 10, 19, 2]
    if SHARED.exists():
        assert SHARED.read_bytes() == path.read_bytes()
    with pytest.raises(DataError, match="no built-in data set 'mnist'; choose one of ecg5000"):
        builtin_file("mnist")


def test_a_damaged_copy_is_refused(tmp_path, monkeypatch):
    (tmp_path / "ECG5000_TRAIN.txt").write_text("1.0 2.0\n")
    monkeypatch.setattr(builtin_module, "FOLDER", tmp_path)
    with pytest.raises(DataError, match="damaged .*reinstall jax_lstm_ae"):
        builtin_file("ecg5000")


def test_split_is_stratified_disjoint_and_seeded():
    labels = load_sequences(builtin_file("ecg5000")).labels.astype(int)
    train, test = stratified_split(labels, (0.6, 0.4), 0)
    assert len(train) + len(test) == 500 and not set(train) & set(test)
    for c in range(1, 6):
        n = int(np.sum(labels == c))
        assert int(np.sum(labels[train] == c)) == round(0.6 * n)
    again, _ = stratified_split(labels, (0.6, 0.4), 0)
    other, _ = stratified_split(labels, (0.6, 0.4), 1)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    files = ecg5000_files(0)
    rows = [r for r in builtin_file("ecg5000").read_text().splitlines() if r.strip()]
    assert files["train.txt"].decode().splitlines() == [rows[i] for i in train]


def test_data_command_writes_checks_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "d" / "e"
    assert cli(["data", "ecg5000", "--out", str(out)]) == 0
    assert "train.txt (299 beats), test.txt (201 beats)" in capsys.readouterr().out
    files = ecg5000_files(0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    before = (out / "train.txt").read_bytes()
    assert cli(["data", "ecg5000", "--out", str(out), "--seed", "3"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and (out / "train.txt").read_bytes() == before
    assert cli(["data", "ecg5000", "--out", str(out), "--seed", "3", "--force"]) == 0
    assert (out / "train.txt").read_bytes() == ecg5000_files(3)["train.txt"] != before
    (tmp_path / "f").write_text("x")
    assert cli(["data", "ecg5000", "--out", str(tmp_path / "f")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
