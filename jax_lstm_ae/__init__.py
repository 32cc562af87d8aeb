"""jax_lstm_ae: LSTM sequence autoencoders on pure JAX functions.

The layers of the package, arrows pointing one way (down):

    kernels (cell, per-example reference scans; fast, pallas, cudnn kernels)
      -> backends (the backend set, resolved when traced; the batched stack)
        -> nn (encoder, decoders, heads -> model)
    data (NumPy loaders, batches)
      -> train (step, fit, checkpoints, data parallelism)
        -> apps (anomaly scores, metrics, probe, weight import)
          -> cli (the ``jax-lstm-ae`` command)

This module holds the names most code needs; everything else is reachable
through the subpackages (``jax_lstm_ae.nn.lstm_stack``, ``jax_lstm_ae.apps.roc_auc``).
"""

from jax_lstm_ae import apps, backends, data, kernels, nn, train
from jax_lstm_ae.apps import (
    error_vectors,
    fit_probe,
    fit_scorer,
    recurrent_autoencoder_from_torch,
    score_errors,
)
from jax_lstm_ae.data import (
    Batch,
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
)
from jax_lstm_ae.nn import (
    Autoencoder,
    DecoderSpec,
    EncoderSpec,
    HeadSpec,
    ModelSpec,
    build,
    Decoder,
    Encoder,
    Head,
    conditional,
    latent_as_sequence,
    linear,
    lstm_encoder,
    make_autoencoder,
    recurrent_autoencoder,
    repeat,
    sigmoid,
    softmax,
    teacher_forced,
    unconditioned,
)
from jax_lstm_ae.train import (
    TrainState,
    ask_for_cpu_devices,
    create_train_state,
    encode_dataset,
    fit,
    gaussian_noise,
    initialize_distributed,
    load_run,
    make_data_mesh,
    make_eval_step,
    make_optimizer,
    make_train_step,
    preset,
    resume_training,
    run_training,
    TrainSpec,
    save_run,
    step_dropout,
    use_all_cores,
)

__version__ = "0.1.0"

__all__ = [
    "Autoencoder",
    "Batch",
    "Dataset",
    "Decoder",
    "DecoderSpec",
    "Encoder",
    "EncoderSpec",
    "Head",
    "HeadSpec",
    "ModelSpec",
    "Normalizer",
    "TrainSpec",
    "TrainState",
    "apps",
    "ask_for_cpu_devices",
    "backends",
    "batches",
    "build",
    "conditional",
    "create_train_state",
    "data",
    "encode_dataset",
    "error_vectors",
    "fit",
    "fit_probe",
    "fit_scorer",
    "from_arrays",
    "gaussian_noise",
    "initialize_distributed",
    "kernels",
    "latent_as_sequence",
    "linear",
    "load_run",
    "load_sequences",
    "load_series",
    "lstm_encoder",
    "make_autoencoder",
    "make_data_mesh",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "nn",
    "pad_sequences",
    "preset",
    "recurrent_autoencoder",
    "recurrent_autoencoder_from_torch",
    "repeat",
    "resume_training",
    "run_training",
    "save_run",
    "score_errors",
    "sigmoid",
    "sliding_windows",
    "softmax",
    "step_dropout",
    "synthetic",
    "teacher_forced",
    "train",
    "train_val_split",
    "unconditioned",
    "use_all_cores",
]
