"""Host-side data: loaders, padding, normalisation, windows, batches, synthetic sets (NumPy only).

Modules, each importing only those above it:
  core         DataError, Batch, Dataset, shared checks, pad_sequences, from_arrays
  tables       delimited text files as cells and numbers
  numpy_files  .npy / .npz files
  ts           the sktime/aeon .ts format
  windows      one long series <-> sliding windows
  lazy         .npy files bigger than memory: windows read on demand, statistics in chunks
  loaders      load_sequences / load_series: pick the format, lay out the sequences
  normalize    Normalizer
  batching     batches, train_val_split
  synthetic    built-in synthetic sets
  builtin      data files shipped with the package (ECG5000's training file)
"""

from jax_lstm_ae.data.batching import batches, split_sizes, train_val_split
from jax_lstm_ae.data.builtin import BUILTIN, builtin_file, ecg5000_files, stratified_split
from jax_lstm_ae.data.core import Batch, DataError, Dataset, count_empty, from_arrays, pad_sequences
from jax_lstm_ae.data.lazy import LazyWindows, Moments, is_lazy, lazy_dataset, open_npy
from jax_lstm_ae.data.loaders import FORMATS, load_sequences, load_series
from jax_lstm_ae.data.normalize import Normalizer
from jax_lstm_ae.data.synthetic import synthetic
from jax_lstm_ae.data.ts import TsFile, TsHeader, load_ts, read_ts
from jax_lstm_ae.data.windows import sliding_windows, windows_to_points

__all__ = [
    "BUILTIN",
    "Batch",
    "DataError",
    "Dataset",
    "FORMATS",
    "LazyWindows",
    "Moments",
    "Normalizer",
    "TsFile",
    "TsHeader",
    "batches",
    "builtin_file",
    "count_empty",
    "ecg5000_files",
    "from_arrays",
    "is_lazy",
    "lazy_dataset",
    "load_sequences",
    "load_series",
    "load_ts",
    "open_npy",
    "pad_sequences",
    "read_ts",
    "sliding_windows",
    "split_sizes",
    "stratified_split",
    "synthetic",
    "train_val_split",
    "windows_to_points",
]
