"""`jax-lstm-ae encode` and `reconstruct`: a run's latents, or its
reconstructions and per-sequence errors, written as .npy or .npz files."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from jax_lstm_ae.cli.args import (
    add_common_args, add_data_args, add_model_arg, check_fits_model, data_spec, load_data, load_runs_for_use,
    setup_common,
)  # fmt: skip
from jax_lstm_ae.cli.checks import positive
from jax_lstm_ae.cli.outputs import FileOut, inputs_of, plan_files, write_bytes
from jax_lstm_ae.cli.shell import fail


def register(subparsers) -> None:
    """Add `encode` and `reconstruct` to an argparse subparsers object."""
    for name, func, what, out_help in (
        ("encode", cmd_encode, "latents z (N, E) of each sequence ((K, N, E) with --model all)",
         "FILE.npy gets z; FILE.npz gets z, lengths, labels, starts"),
        ("reconstruct", cmd_reconstruct, "reconstructions (data units) and per-sequence errors",
         "FILE.npy gets the reconstructions (N, T, F) and FILE.errors.npy the errors (N,); "
         "FILE.npz gets reconstruction, errors, step_errors, lengths, labels, starts"),
    ):  # fmt: skip
        p = subparsers.add_parser(name, help=f"write {what}", description=f"Load RUN_DIR and write {what}.")
        p.add_argument("--run", required=True, metavar="RUN_DIR")
        add_data_args(p, default_help=" (default: the run's training data and options)")
        p.add_argument("--out", required=True, metavar="FILE", help=out_help)
        p.add_argument("--force", action="store_true", help="replace FILE (and its companion files) if they exist")
        p.add_argument("--batch-size", type=positive, default=256, help="sequences per jitted call")
        add_model_arg(p, allow_all=True)
        add_common_args(p)
        p.set_defaults(func=func)


def _plan_out(args, others: tuple[str, ...]) -> Path:
    """Check --out (and, for .npy, the ``<stem>.<key>.npy`` files beside it) before any work."""
    out = Path(args.out)
    npy = out.suffix.lower() != ".npz"
    writes = (out, *(out.with_name(f"{out.stem}.{k}.npy") for k in others)) if npy else (out,)
    plan_files([FileOut("--out", out, (".npy", ".npz"), "not a .npy or .npz file name", writes)], inputs_of(args),
               force=args.force)
    return out


def _runs_and_data(args):
    """The run's models (one, or K with --model all) and the raw data; each model normalises it its own way
    (``normed(run)``)."""
    runs = load_runs_for_use(args.run, args.model)
    spec = data_spec(args, runs[0].config.get("data"))
    if spec.get("source") is None:
        fail(f"no data given and {args.run} does not record its training data; pass --data PATH")
    data = load_data(spec)
    check_fits_model(data, runs[0].model, str(spec["source"]))
    return runs, data


def _normed(run, data):
    return run.normalizer.apply(data) if run.normalizer is not None else data


def _stacked(args, parts: list) -> np.ndarray:
    """One model's array, or (with --model all) the K models' stacked on a leading axis K."""
    return np.stack(parts) if args.model == "all" else parts[0]


def _chunked(fn, data, chunk: int) -> np.ndarray:
    """fn(x, lengths) over fixed-size chunks (the last one padded with copies of
    the first example), so one compilation serves any N."""
    outs = []
    for i in range(0, data.n, chunk):
        x, ln = data.x[i : i + chunk], data.lengths[i : i + chunk]
        k = x.shape[0]
        if k < chunk and data.n > chunk:
            x = np.concatenate([x, np.repeat(x[:1], chunk - k, 0)])
            ln = np.concatenate([ln, np.repeat(ln[:1], chunk - k)])
        outs.append(np.asarray(fn(x, ln))[:k])
    return np.concatenate(outs)



def _save_arrays(out: Path, arrays: dict[str, np.ndarray], main_key: str) -> list[Path]:
    """.npz: every array in one file; .npy: the main array in ``out`` and each
    other as ``<stem>.<key>.npy``. Each file written whole or not at all."""
    written = []
    if out.suffix.lower() == ".npz":
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
        write_bytes(out, buf.getvalue())
        return [out]
    for key, arr in arrays.items():
        if arr is None:
            continue
        path = out if key == main_key else out.with_name(f"{out.stem}.{key}.npy")
        buf = io.BytesIO()
        np.save(buf, arr)
        write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def _encode(args, run, normed) -> np.ndarray:
    if getattr(args, "mesh", None) is not None:  # --devices / several processes: sharded batches
        from jax_lstm_ae.train.parallel import encode_dataset

        return encode_dataset(run.model, run.params, normed.x, normed.lengths, mesh=args.mesh,
                              batch_size=args.batch_size, global_rows=True)
    return _chunked(lambda x, ln: run.model.encode(run.params, x, ln), normed, args.batch_size)


def cmd_encode(args: argparse.Namespace) -> int:
    out = _plan_out(args, ())
    setup_common(args)
    runs, data = _runs_and_data(args)
    z = _stacked(args, [_encode(args, run, _normed(run, data)) for run in runs])
    extra = {"lengths": data.lengths, "labels": data.labels, "starts": data.starts} if out.suffix.lower() == ".npz" else {}
    written = _save_arrays(out, {"z": z, **extra}, "z")
    models = f" with {len(runs)} models (K, N, E)" if args.model == "all" else ""
    print(f"encoded {data.n} sequences{models} -> latents {z.shape} in {', '.join(map(str, written))}")
    return 0


def _reconstruct(args, run, data) -> tuple[np.ndarray, np.ndarray]:
    """One model's reconstructions (data units) and per-step errors."""
    model, params, normed = run.model, run.params, _normed(run, data)
    if getattr(args, "mesh", None) is not None:  # --devices / several processes: sharded batches
        from jax_lstm_ae.train.parallel import reconstruct_dataset, step_errors_dataset

        kw = dict(mesh=args.mesh, batch_size=args.batch_size, global_rows=True)
        recon = reconstruct_dataset(model, params, normed.x, normed.lengths, **kw)
        step_err = step_errors_dataset(model, params, normed.x, normed.lengths, **kw)
    else:
        recon = _chunked(lambda x, ln: model.reconstruct(params, x, ln), normed, args.batch_size)
        step_err = _chunked(lambda x, ln: model.step_errors(params, x, ln), normed, args.batch_size)
    if run.normalizer is not None:
        recon = run.normalizer.invert(recon, data.lengths)
    return recon, step_err


def cmd_reconstruct(args: argparse.Namespace) -> int:
    out = _plan_out(args, ("errors",))
    setup_common(args)
    runs, data = _runs_and_data(args)
    outs = [_reconstruct(args, run, data) for run in runs]
    recon, step_err = _stacked(args, [o[0] for o in outs]), _stacked(args, [o[1] for o in outs])
    errors = step_err.sum(-1) / np.maximum(data.lengths, 1)  # mean over valid steps (0 for an empty sequence)
    arrays = {"reconstruction": recon, "errors": errors.astype(np.float32)}
    if out.suffix.lower() == ".npz":
        arrays.update(step_errors=step_err, lengths=data.lengths, labels=data.labels, starts=data.starts)
    written = _save_arrays(out, arrays, "reconstruction")
    if errors.ndim == 2:  # --model all
        print(f"reconstructed {data.n} sequences with {len(runs)} models {recon.shape}; mean error per model "
              + " ".join(f"{e:.5f}" for e in errors.mean(1)))
    else:
        worst = np.argsort(-errors)[:3]
        print(
            f"reconstructed {data.n} sequences {recon.shape}; mean error {errors.mean():.5f}; "
            f"highest errors at sequences {', '.join(f'{i} ({errors[i]:.4f})' for i in worst)}"
        )
    print(f"written: {', '.join(map(str, written))}")
    return 0
