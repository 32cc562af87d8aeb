"""Training: the training spec and the one runner (and its K-models form, many), state and step, denoising corruptions, fit, checkpoints and runs, data parallelism, several hosts."""

from jax_lstm_ae.train.step import TrainState, create_train_state, make_eval_step, make_optimizer, make_train_step, train_step_fn
from jax_lstm_ae.train.noise import Corruption, gaussian_noise, step_dropout
from jax_lstm_ae.train.fit import FitProgress, NonFiniteError, budget_epochs, fit, fit_progress_from_extra
from jax_lstm_ae.train.checkpoint import Run, RunError, build_model, build_optimizer, load_run, model_config, model_spec, optimizer_config, save_run
from jax_lstm_ae.train.spec import Normalize, OptimizerSpec, PRESETS, Schedule, TrainSpec, preset
from jax_lstm_ae.train.runner import TrainResult, data_fingerprint, read_specs, resume_training, run_training, split_data
from jax_lstm_ae.train.many import (ManyResult, ManyRun, encode_many, load_many, record_choice,
                                   resume_training_many, run_training_many, step_errors_many)
from jax_lstm_ae.train.parallel import ShardedStep, data_parallel, encode_dataset, make_data_mesh, map_dataset, pad_batch, reconstruct_dataset, shard_batch, shard_state, state_shardings, step_errors_dataset, to_host
from jax_lstm_ae.train.cores import all_cores_mesh, ask_for_cpu_devices, cpu_cores, use_all_cores
from jax_lstm_ae.train.distributed import distributed_config, initialize_distributed, process_rows
from jax_lstm_ae.train.allocator import tune_cpu_allocator
from jax_lstm_ae.train.memory import ResourceError, check_train_memory, estimate_train_memory

__all__ = [
    "Corruption",
    "FitProgress",
    "ManyResult",
    "ManyRun",
    "NonFiniteError",
    "Normalize",
    "OptimizerSpec",
    "PRESETS",
    "ResourceError",
    "Run",
    "RunError",
    "Schedule",
    "ShardedStep",
    "TrainResult",
    "TrainSpec",
    "TrainState",
    "all_cores_mesh",
    "ask_for_cpu_devices",
    "budget_epochs",
    "build_model",
    "build_optimizer",
    "check_train_memory",
    "cpu_cores",
    "create_train_state",
    "data_fingerprint",
    "data_parallel",
    "distributed_config",
    "encode_dataset",
    "encode_many",
    "estimate_train_memory",
    "fit",
    "fit_progress_from_extra",
    "gaussian_noise",
    "initialize_distributed",
    "load_many",
    "load_run",
    "make_data_mesh",
    "make_eval_step",
    "make_optimizer",
    "make_train_step",
    "map_dataset",
    "model_config",
    "model_spec",
    "optimizer_config",
    "pad_batch",
    "preset",
    "process_rows",
    "read_specs",
    "reconstruct_dataset",
    "record_choice",
    "resume_training",
    "resume_training_many",
    "run_training",
    "run_training_many",
    "save_run",
    "shard_batch",
    "shard_state",
    "split_data",
    "state_shardings",
    "step_dropout",
    "step_errors_dataset",
    "step_errors_many",
    "to_host",
    "train_step_fn",
    "tune_cpu_allocator",
    "use_all_cores",
]
