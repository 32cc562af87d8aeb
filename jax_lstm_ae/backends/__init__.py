"""How an LSTM stack runs its recurrence: the batched backends ("fast" for
CPU, "pallas" / "pallas_bf16" and "cudnn" for GPU). Each module loads only
when its backend is chosen; the plain per-example scan ("reference") lives in
``jax_lstm_ae.nn.layer``."""
