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


def _runs_and_data(args, command: str):
    """The run's models (one, or K with --model all), the data, and the data as each model reads it (its own
    normalisation)."""
    from jax_lstm_ae.apps.detectors import is_detector_run

    if is_detector_run(args.run):
        return _series_run_and_data(args, command)
    runs = load_runs_for_use(args.run, args.model)
    spec = data_spec(args, runs[0].config.get("data"))
    if spec.get("source") is None:
        fail(f"no data given and {args.run} does not record its training data; pass --data PATH")
    data = load_data(spec)
    check_fits_model(data, runs[0].model, str(spec["source"]))
    return runs, data, [run.normalizer.apply(data) if run.normalizer is not None else data for run in runs]


def _stacked(args, parts: list) -> np.ndarray:
    """One model's array, or (with --model all) the K models' stacked on a leading axis K."""
    return np.stack(parts) if args.model == "all" else parts[0]


def _series_run_and_data(args, command: str):
    """A run of the series pipeline: the windows its model was trained on and scores (detrended, pooled, in the
    run's normalisation), their ``starts`` in rows of the series. Only ``encode`` takes them: a reconstruction
    of detrended, pooled steps is not one at the input's resolution."""
    from jax_lstm_ae.apps.detectors import load_detector
    from jax_lstm_ae.cli.series import series_for_run

    if command != "encode":
        fail(f"{command} takes runs of sequences; {args.run} is a run of the series pipeline, whose model sees "
             "detrended, pooled windows: `detect --run RUN --explain FILE.csv` names the rows and features it "
             "reconstructs worst")
    if args.mmap:
        fail("a run of the series pipeline loads its series; drop --mmap")
    runs = load_runs_for_use(args.run, args.model)
    det = load_detector(args.run)
    series, _, _ = series_for_run(det, args)
    windows, starts = det.prepared_windows(series)
    windows = windows._replace(starts=np.asarray(starts) * det.plan_.pool)
    print(f"windows of the run's series pipeline: {det.plan_.describe()}")
    return runs, windows, [run.normalizer.apply(windows) for run in runs]


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


def _encode_lazy(args, out: Path, run, data, normed, chunk: int = 16384) -> int:
    """``encode --mmap``: windows read and encoded ``chunk`` at a time, z [N, E]
    appended to a .npy file beside ``out``, moved into place when complete."""
    import os
    import tempfile

    if out.suffix.lower() == ".npz":
        fail("with --mmap, encode writes z (N, E) to a .npy file chunk by chunk; give --out FILE.npy")
    mesh = getattr(args, "mesh", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for a in range(0, data.n, chunk):
                x = normed.x[a:a + chunk]
                ln = np.full((x.shape[0],), x.shape[1], np.int32)
                if mesh is not None:
                    from jax_lstm_ae.train.parallel import encode_dataset

                    z = encode_dataset(run.model, run.params, x, ln, mesh=mesh, batch_size=args.batch_size,
                                       global_rows=True)
                else:
                    z = _chunked(lambda xb, lb: run.model.encode(run.params, xb, lb),
                                 normed._replace(x=x, lengths=ln), args.batch_size)
                z = np.ascontiguousarray(z, np.float32)
                if a == 0:
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": z.dtype.str, "fortran_order": False, "shape": (data.n, z.shape[1])})
                f.write(z.tobytes())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"encoded {data.n} windows -> latents ({data.n}, {z.shape[1]}) in {out} (read and written {chunk} at a "
          "time)")
    return 0


def _encode(args, run, normed) -> np.ndarray:
    if getattr(args, "mesh", None) is not None:  # --devices / several processes: sharded batches
        from jax_lstm_ae.train.parallel import encode_dataset

        return encode_dataset(run.model, run.params, normed.x, normed.lengths, mesh=args.mesh,
                              batch_size=args.batch_size, global_rows=True)
    return _chunked(lambda x, ln: run.model.encode(run.params, x, ln), normed, args.batch_size)


def cmd_encode(args: argparse.Namespace) -> int:
    from jax_lstm_ae.data import is_lazy

    out = _plan_out(args, ())
    setup_common(args)
    runs, data, normeds = _runs_and_data(args, "encode")
    if is_lazy(data):
        if len(runs) > 1:
            fail("encode --mmap writes one model's latents chunk by chunk; give --model chosen or --model K")
        return _encode_lazy(args, out, runs[0], data, normeds[0])
    z = _stacked(args, [_encode(args, run, normed) for run, normed in zip(runs, normeds)])
    extra = {"lengths": data.lengths, "labels": data.labels, "starts": data.starts} if out.suffix.lower() == ".npz" else {}
    written = _save_arrays(out, {"z": z, **extra}, "z")
    models = f" with {len(runs)} models (K, N, E)" if args.model == "all" else ""
    print(f"encoded {data.n} sequences{models} -> latents {z.shape} in {', '.join(map(str, written))}")
    return 0


def _reconstruct(args, run, data, normed) -> tuple[np.ndarray, np.ndarray]:
    """One model's reconstructions (data units) and per-step errors."""
    model, params = run.model, run.params
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
    from jax_lstm_ae.data import is_lazy

    out = _plan_out(args, ("errors",))
    if args.mmap:
        fail("reconstruct holds every reconstruction (N, T, F) in memory and does not take --mmap; score a file "
             "read on demand with `detect --mmap`, or encode it with `encode --mmap`")
    setup_common(args)
    runs, data, normeds = _runs_and_data(args, "reconstruct")
    if is_lazy(data):  # the run was trained with --mmap and no --data was given: its file is read whole
        fail(f"{args.run} was trained on a file read on demand (--mmap); reconstruct loads its data whole: give "
             "--data with a smaller file")
    outs = [_reconstruct(args, run, data, normed) for run, normed in zip(runs, normeds)]
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
