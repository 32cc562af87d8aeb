"""`jax-lstm-ae data NAME --out DIR`: the data files shipped with the package,
written where the examples expect them.

    jax-lstm-ae data ecg5000 --out data/     # ECG5000_TRAIN.txt, train.txt (60 %), test.txt (40 %)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jax_lstm_ae.cli import checks
from jax_lstm_ae.cli.outputs import FileOut, plan_files, write_bytes
from jax_lstm_ae.cli.shell import fail


def register(subparsers) -> None:
    """Add `data` to an argparse subparsers object."""
    from jax_lstm_ae.data import BUILTIN

    p = subparsers.add_parser(
        "data", help="write a data set shipped with the package (for the examples)",
        description="Write a data set that ships inside the package into DIR: ecg5000 gives ECG5000_TRAIN.txt "
                    "(500 heartbeats of 140 steps, class label in column 0; source, licence and checksum in "
                    "jax_lstm_ae/data/builtin/README.md) and its stratified 60 / 40 split train.txt / test.txt.")
    p.add_argument("name", choices=sorted(BUILTIN), help="the data set")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created if missing)")
    p.add_argument("--seed", type=checks.seed, default=0, help="seed of the train / test split (default 0)")
    p.add_argument("--force", action="store_true", help="replace files of the same names in DIR")
    p.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    from jax_lstm_ae.data import ecg5000_files

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    files = ecg5000_files(args.seed)
    plan = plan_files([FileOut("--out", out / name, (".txt",), "data file") for name in files], [], force=args.force,
                      create_parents=True)
    plan.make_parents()
    try:
        for name, data in files.items():
            write_bytes(out / name, data)
    except BaseException:
        plan.discard()
        raise
    lines = {name: sum(1 for ln in data.splitlines() if ln.strip()) for name, data in files.items()}
    print(f"wrote {out}/: " + ", ".join(f"{name} ({n} beats)" for name, n in lines.items()))
    print(f"next: jax-lstm-ae train --data {out}/train.txt --normal-class 1 --out runs/ecg   # then detect on "
          f"{out}/test.txt")
    return 0
