"""Every kind of bad input, on every command: exit code 2, one line on stderr
that names the problem and says what to do, no traceback, and nothing created
or changed on disk (the data files, the run, the output folder)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from jax_lstm_ae.cli.main import main

TINY = ["--embedding-dim", "4", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Data files (good and bad) and one small trained run, made once."""
    d = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    x = np.sin(0.5 * np.arange(12)[None, :, None] + rng.uniform(0, 6, (40, 1, 2))).astype(np.float32)
    np.savez(d / "good.npz", x=x, lengths=rng.integers(6, 13, 40), labels=np.arange(40) % 2)
    np.save(d / "three.npy", np.zeros((4, 12, 3), np.float32))
    text = {
        "empty.txt": "",
        "nan.txt": "1 2 3\n1 2 nan\n",
        "inf.csv": "a,b\n1,2\n-inf,3\n",
        "ragged.txt": "1 2 3\n4 5\n",
        "word.txt": "1 2 3\n4 five 6\n",
        "underscore.txt": "1 2 3\n0 1_000 2\n",
        "arabic.txt": "1 2 3\n0 \u0661\u0662 2\n",
        "huge.txt": "1 2 3\n0 1e39 2\n",
        "header_only.csv": "a,b,c\n",
        "short.txt": "1\n2\n3\n",
        "labels_bad.txt": "0\n1\nx\n",
        "garbage.npy": "not a numpy file",
    }
    for name, body in text.items():
        (d / name).write_text(body)
    np.savez(d / "complex.npz", x=x + 1j)
    np.savez(d / "len_frac.npz", x=x, lengths=np.full(40, 7.9))
    np.savez(d / "len_wrap.npz", x=x, lengths=np.full(40, 2**32 + 5))
    np.savez(d / "len_zero.npz", x=x, lengths=np.zeros(40, int))
    np.savez(d / "len_shape.npz", x=x, lengths=np.ones(3, int))
    np.savez(d / "no_x.npz", a=x, b=x)
    np.save(d / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(d / "onedim.npy", np.zeros((5, 2, 2, 2), np.float32))
    np.save(d / "huge.npy", np.full((4, 12, 2), 1e39))
    (d / "folder").mkdir()
    (d / "a_file").write_text("x")
    assert main(["train", "--data", str(d / "good.npz"), "--out", str(d / "run"), "--epochs", "1", *TINY]) == 0
    for name, edit in {
        "run_badtype": lambda c: c["model"].update(embedding_dim="abc"),
        "run_nomodel": lambda c: c.pop("model"),
        "run_badnorm": lambda c: c.update(normalizer={"mode": "zscore"}),
    }.items():
        (d / name).mkdir()
        for f in ("checkpoint.msgpack", "metrics.jsonl"):
            (d / name / f).write_bytes((d / "run" / f).read_bytes())
        cfg = json.loads((d / "run" / "config.json").read_text())
        edit(cfg)
        (d / name / "config.json").write_text(json.dumps(cfg))
    (d / "run_notjson").mkdir()
    (d / "run_notjson" / "config.json").write_text("{not json")
    (d / "run_trunc").mkdir()
    (d / "run_trunc" / "config.json").write_bytes((d / "run" / "config.json").read_bytes())
    (d / "run_trunc" / "checkpoint.msgpack").write_bytes((d / "run" / "checkpoint.msgpack").read_bytes()[:100])
    np.savetxt(d / "labels.txt", np.arange(40) % 2, fmt="%d")
    return d


def _snapshot(*roots: Path) -> dict:
    out = {}
    for root in roots:
        for dirpath, dirnames, files in os.walk(root):
            out[dirpath] = "dir"
            for f in files:
                p = Path(dirpath) / f
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


T = "train --data {d}/good.npz --out {o}/new/run --epochs 1 --embedding-dim 4 --quiet"
E = "encode --run {d}/run --out {o}/z.npy"
DET = "detect --run {d}/run --data {d}/good.npz --out {o}/s.csv"
PRB = "probe --run {d}/run --data {d}/good.npz"

# (command line, words the line must hold). {d}: the data folder, {o}: an empty output folder.
CASES = [
    # --- commands and flags argparse sees
    ("", "give a command"),
    ("bogus", "invalid choice: 'bogus'"),
    ("train --data {d}/good.npz", "the following arguments are required: --out"),
    (T + " --no-such-flag", "unrecognized arguments: --no-such-flag"),
    (T + " --decoder bogus", "argument --decoder: invalid choice: 'bogus'"),
    (T + " --head bogus", "argument --head: invalid choice"),
    (T + " --format bogus", "argument --format: invalid choice"),
    (T + " --normalize bogus", "argument --normalize: invalid choice"),
    # --- every numeric flag: 0, negative, nan, inf, out of range, not a plain number
    *[(T + f" --epochs {v}", f"argument --epochs: expected an integer > 0, got '{v}'")
      for v in ("0", "-1", "nan", "1.5", "1_000", "\u0661\u0662", "x")],
    *[(T + f" --batch-size {v}", "argument --batch-size: expected an integer > 0") for v in ("0", "-3", "inf")],
    *[(T + f" --embedding-dim {v}", "argument --embedding-dim: expected an integer > 0") for v in ("0", "-2", "x")],
    *[(T + f" --hidden {v}", "argument --hidden:") for v in ("-1", "1_0", "8,x")],
    *[(T + f" --lr {v}", f"argument --lr: expected a number > 0 (e.g. 0.001), got '{v}'")
      for v in ("0", "-1", "nan", "inf", "1e999", "abc", "1_0")],
    (T + " --lr=-inf", "argument --lr: expected a number > 0 (e.g. 0.001), got '-inf'"),
    *[(T + f" --clip-norm {v}", "argument --clip-norm: expected a number >= 0") for v in ("-1", "nan", "inf")],
    *[(T + f" --weight-decay {v}", "argument --weight-decay: expected a number >= 0") for v in ("-0.1", "nan", "inf")],
    *[(T + f" --warmup-steps {v}", "argument --warmup-steps: expected an integer >= 0") for v in ("-5", "2.5", "nan")],
    *[(T + f" --val-fraction {v}", "argument --val-fraction: expected a number in [0,1)")
      for v in ("1.5", "-0.1", "nan", "1", "inf")],
    *[(T + f" --teacher-prob {v}", "argument --teacher-prob: expected a number in [0,1]") for v in ("1.5", "-1", "nan")],
    *[(T + f" --input-noise {v}", "argument --input-noise: expected a number >= 0") for v in ("-1", "nan", "inf")],
    *[(T + f" --step-dropout {v}", "argument --step-dropout: expected a number in [0,1)") for v in ("1", "-0.5", "nan")],
    *[(T + f" --patience {v}", "argument --patience: expected an integer > 0") for v in ("0", "-1")],
    *[(T + f" --seed {v}", "argument --seed: expected an integer >= 0 and <= 4294967295")
      for v in ("-1", "4294967296", "nan", "1.5")],
    (T + " --window 0", "argument --window: expected an integer > 0"),
    (T + " --window 4 --stride -1", "argument --stride: expected an integer > 0"),
    (T + " --devices 0", "--devices takes a positive number, 'all' or 'auto'"),
    (T + " --devices x", "--devices takes a positive number, 'all' or 'auto'"),
    (T + " --devices 1000", "--devices 1000 is more than this process can split a batch over"),
    (T + " --num-processes 0", "argument --num-processes: expected an integer > 0"),
    (T + " --process-id -1", "argument --process-id: expected an integer >= 0"),
    (T + " --fsdp-min-size 0", "argument --fsdp-min-size: expected an integer > 0"),
    (T + " --input-noise 0.1 --step-dropout 0.1", "give only one of them, not both"),
    (T + " --head sigmoid", "--head sigmoid needs data in {0, 1}"),
    # --- --out and --resume
    (T.replace("{o}/new/run", "{d}/run"), "already exists; pass --force to replace it"),
    (T.replace("{o}/new/run", "{d}/a_file"), "exists and is not a directory"),
    (T.replace("{o}/new/run", "{d}/a_file/run"), "is a file, not a folder"),
    ("train --out {o}/nothing --resume", "no such run directory"),
    ("train --out {d}/run --resume --force", "give only one of them"),
    ("train --out {d}/run --resume --lr 0.5", "--lr 0.5 cannot change when resuming (the run has 0.01)"),
    ("train --out {d}/run --resume --decoder conditional", "--decoder conditional cannot change when resuming"),
    ("train --out {d}/run --resume --batch-size 4", "--batch-size 4 cannot change when resuming (the run has 8)"),
    ("train --out {d}/run --resume --data synthetic:sines", "--data synthetic:sines cannot change when resuming"),
    ("train --out {d}/run --resume --bidirectional", "--bidirectional cannot change when resuming"),
    ("train --out {d}/run --resume --epochs 1", "has already trained 1 epochs; pass --epochs with a larger total"),
    # --- data files
    (T.replace("good.npz", "missing.txt"), "missing.txt: no such file"),
    (T.replace("good.npz", "folder"), "is a directory, expected a data file"),
    (T.replace("good.npz", "empty.txt"), "the file is empty"),
    (T.replace("good.npz", "nan.txt"), "line 2, column 3 is 'nan' (not finite"),
    (T.replace("good.npz", "inf.csv"), "line 3, column 1 is '-inf'"),
    (T.replace("good.npz", "ragged.txt"), "line 2 has 2 columns but line 1 has 3"),
    (T.replace("good.npz", "word.txt"), "line 2, column 2 holds 'five', which is not a number"),
    (T.replace("good.npz", "underscore.txt"), "line 2, column 2 holds '1_000', which is not a number"),
    (T.replace("good.npz", "arabic.txt"), "line 2, column 2 holds '\u0661\u0662', which is not a number"),
    (T.replace("good.npz", "huge.txt"), "line 2, column 2 is '1e39', beyond float32's range"),
    (T.replace("good.npz", "header_only.csv"), "holds a header but no data rows"),
    (T.replace("good.npz", "short.txt") + " --window 5", "the training stretch has 3 rows, too few for windows of 5"),
    (T.replace("good.npz", "short.txt") + " --window 1 --columns 4", "asks for column 4 but the file has 1"),
    (T.replace("good.npz", "short.txt") + " --window 1 --columns name", "names column 'name' but it has no header"),
    (T + " --columns 5", "--columns asks for column 5 but the file has 2 columns"),
    (T.replace("good.npz", "nan.txt") + " --columns 1", "--columns picks features of multivariate files"),
    (T.replace("good.npz", "complex.npz"), "holds complex values; give real numbers"),
    (T.replace("good.npz", "len_frac.npz"), "sequence 0 has length 7.9; lengths must be whole numbers"),
    (T.replace("good.npz", "len_wrap.npz"), "sequence 0 has length 4294967301; every sequence needs between 0 and T=12"),
    (T.replace("good.npz", "len_shape.npz"), "lengths must have shape (40,), got (3,)"),
    (T.replace("good.npz", "no_x.npz"), "needs one named 'x'"),
    (T.replace("good.npz", "strings.npy"), "holds <U1 values, expected numbers"),
    (T.replace("good.npz", "onedim.npy"), "expected sequences of shape (N, T) or (N, T, F)"),
    (T.replace("good.npz", "huge.npy"), "is beyond float32's range"),
    (T.replace("good.npz", "garbage.npy"), "not a NumPy file (it starts with neither"),
    (T.replace("{d}/good.npz", "synthetic:bogus"), "unknown synthetic data set 'bogus'"),
    # --- encode / reconstruct / info: runs and outputs
    ("encode --run {o}/norun --out {o}/z.npy", "no such run directory"),
    ("encode --run {d}/a_file --out {o}/z.npy", "no such run directory"),
    ("encode --run {d}/folder --out {o}/z.npy", "not a run directory (no config.json)"),
    ("encode --run {d}/run_badtype --out {o}/z.npy", "invalid model or optimizer config (model.embedding_dim: expected an integer"),
    ("encode --run {d}/run_nomodel --out {o}/z.npy", "invalid model or optimizer config (no model or optimizer section)"),
    ("encode --run {d}/run_badnorm --out {o}/z.npy", "invalid normalizer section"),
    ("encode --run {d}/run_notjson --out {o}/z.npy", "not valid JSON"),
    ("encode --run {d}/run_trunc --out {o}/z.npy", "cannot read the checkpoint"),
    ("info --run {d}/run_badtype", "invalid model or optimizer config"),
    ("info --run {o}/norun", "no such run directory"),
    (E.replace("z.npy", "z.txt"), "not a .npy or .npz file name"),
    (E.replace("{o}/z.npy", "{d}/folder"), "not a .npy or .npz file name"),
    (E.replace("{o}/z.npy", "{o}/nodir/z.npy"), "folder"),
    (E + " --batch-size 0", "argument --batch-size: expected an integer > 0"),
    (E + " --data {d}/three.npy", "F=3 features per step but the model was trained on F=2"),
    ("reconstruct --run {d}/run --out {o}/r.csv", "not a .npy or .npz file name"),
    ("reconstruct --run {d}/run --out {o}/r.npz --data {d}/nan.txt", "line 2, column 3 is 'nan'"),
    # --- detect
    (DET + " --k nan", "argument --k: expected a number, got 'nan'"),
    (DET + " --k inf", "argument --k: expected a number, got 'inf'"),
    (DET + " --threshold nan", "--threshold must be fbeta, contamination, meanstd, auto or a finite number"),
    (DET + " --threshold inf", "a finite number, got 'inf'"),
    (DET + " --threshold bogus", "a finite number, got 'bogus'"),
    (DET + " --beta nan", "argument --beta: expected a number > 0"),
    (DET + " --beta 0", "argument --beta: expected a number > 0"),
    (DET + " --contamination 1", "argument --contamination: expected a number in [0,1)"),
    (DET + " --contamination nan", "argument --contamination: expected a number in [0,1)"),
    (DET + " --batch-size 0", "argument --batch-size: expected an integer > 0"),
    (DET.replace("s.csv", "s.npy"), "detect writes a CSV table; give a file name ending in .csv"),
    (DET + " --plot {o}/p.jpg", "the plot is a PNG; give a file name ending in .png"),
    (DET + " --plot {d}/a_file/p.png", "is a file, not a folder"),
    (DET.replace("{o}/s.csv", "{d}/a_file/s.csv"), "is a file, not a folder"),
    (DET + " --threshold fbeta", "--threshold fbeta needs labels"),
    (DET + " --labels {o}/none.txt", "no such labels file"),
    (DET + " --labels {d}/labels_bad.txt", "labels must be 0 or 1, one per line; line 3 is 'x'"),
    (DET + " --data {d}/three.npy", "F=3 features per step but the model was trained on F=2"),
    # --- probe
    (PRB + " --batch-size 0", "argument --batch-size: expected an integer > 0"),
    *[(PRB + f" --test-fraction {v}", "argument --test-fraction: expected a number in (0,1)") for v in ("0", "1", "nan")],
    (PRB + " --seed -1", "argument --seed: expected an integer >= 0"),
    (PRB + " --out {o}/nodir/p.json", "does not exist; create it or choose another path"),
]


@pytest.mark.parametrize("line, words", CASES, ids=[f"{i:03d}" for i in range(len(CASES))])
def test_bad_input_exit_2_one_line_nothing_changed(world, tmp_path, capsys, line, words):
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.replace("{d}", str(world)).replace("{o}", str(out)) for a in line.split()]
    before = _snapshot(world, tmp_path)
    code = main(argv)
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    msg = lines[0]
    assert msg.startswith("jax-lstm-ae: error: ") and words in msg, msg
    # ...and says what to do: every message carries advice after the problem
    assert "; " in msg, msg
    assert _snapshot(world, tmp_path) == before

