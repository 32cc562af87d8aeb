"""jax_lstm_ae: LSTM sequence autoencoders on pure JAX functions.

Data flow (arrows point one way): cell -> layer -> strategies (encoder,
decoders, heads) -> model -> train -> applications.
"""

from jax_lstm_ae._cell import LSTMParams, LSTMState, init_lstm, lstm_cell, lstm_step, zero_state
from jax_lstm_ae._decoders import (
    DECODERS,
    Decoder,
    conditional,
    latent_as_sequence,
    repeat,
    teacher_forced,
    unconditioned,
)
from jax_lstm_ae._encoder import Encoder, lstm_encoder
from jax_lstm_ae._heads import HEADS, Head, linear, masked_mean, sigmoid, softmax
from jax_lstm_ae._layer import init_stack, lstm_layer, lstm_stack, scan_gates
from jax_lstm_ae._model import Autoencoder, make_autoencoder, recurrent_autoencoder, reverse_valid
from jax_lstm_ae._train import (
    Batch,
    TrainState,
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    train_step_fn,
)
from jax_lstm_ae._torch_port import linear_from_torch, lstm_from_torch, recurrent_autoencoder_from_torch
from jax_lstm_ae._distributed import distributed_config, initialize_distributed, process_rows
from jax_lstm_ae._parallel import (
    ShardedStep,
    data_parallel,
    encode_dataset,
    make_data_mesh,
    map_dataset,
    pad_batch,
    reconstruct_dataset,
    shard_batch,
    shard_state,
    state_shardings,
    step_errors_dataset,
)

__version__ = "0.1.0"

__all__ = [
    "DECODERS",
    "Batch",
    "TrainState",
    "create_train_state",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "train_step_fn",
    "HEADS",
    "Autoencoder",
    "Decoder",
    "Encoder",
    "Head",
    "LSTMParams",
    "LSTMState",
    "conditional",
    "init_lstm",
    "init_stack",
    "latent_as_sequence",
    "linear",
    "linear_from_torch",
    "lstm_cell",
    "lstm_encoder",
    "lstm_from_torch",
    "lstm_layer",
    "lstm_stack",
    "lstm_step",
    "make_autoencoder",
    "masked_mean",
    "recurrent_autoencoder",
    "recurrent_autoencoder_from_torch",
    "repeat",
    "reverse_valid",
    "scan_gates",
    "sigmoid",
    "softmax",
    "teacher_forced",
    "unconditioned",
    "zero_state",
    "ShardedStep",
    "data_parallel",
    "distributed_config",
    "encode_dataset",
    "initialize_distributed",
    "make_data_mesh",
    "map_dataset",
    "pad_batch",
    "process_rows",
    "reconstruct_dataset",
    "shard_batch",
    "shard_state",
    "state_shardings",
    "step_errors_dataset",
]
