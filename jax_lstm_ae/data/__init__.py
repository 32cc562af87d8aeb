"""Host-side data: loaders, padding, normalisation, windows, batches, synthetic sets (NumPy only)."""

from jax_lstm_ae.data.datasets import Batch, DataError, Dataset, FORMATS, Normalizer, batches, count_empty, from_arrays, load_sequences, load_series, pad_sequences, sliding_windows, synthetic, train_val_split, windows_to_points
from jax_lstm_ae.data.ts import TsFile, TsHeader, load_ts, read_ts

__all__ = [
    "Batch",
    "DataError",
    "Dataset",
    "FORMATS",
    "Normalizer",
    "TsFile",
    "TsHeader",
    "batches",
    "count_empty",
    "from_arrays",
    "load_sequences",
    "load_series",
    "load_ts",
    "pad_sequences",
    "read_ts",
    "sliding_windows",
    "synthetic",
    "train_val_split",
    "windows_to_points",
]
