"""PyTorch nn.LSTM (oneDNN-fused on CPU), eager or torch.compile'd, in float32 or bfloat16.

``torch_bf16`` is PyTorch's own mixed-precision path as its users write it:
``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward pass and
the loss, the backward and Adam outside it, parameters and their gradients
float32. Under CPU autocast ``nn.LSTM`` dispatches to oneDNN's fused
``mkldnn_rnn_layer`` (on PyTorch's CPU autocast list) with bfloat16 inputs,
weights and outputs, and ``mkldnn_rnn_layer_backward`` in bfloat16 too; the
Linear head runs in bfloat16 and ``mse_loss`` in float32 (checked with a
``TorchDispatchMode`` that logs each op's argument dtypes, torch 2.13).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from peers import Runner
from peers._data import batch

_DEFAULT_THREADS = torch.get_num_threads()


class Autoencoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.steps = cfg.steps
        sizes_in = [cfg.features, *cfg.enc_sizes[:-1]]
        self.enc = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(sizes_in, cfg.enc_sizes))
        dec_in = [cfg.enc_sizes[-1], *cfg.dec_sizes[:-1]]
        self.dec = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(dec_in, cfg.dec_sizes))
        self.head = nn.Linear(cfg.dec_sizes[-1], cfg.features)

    def encode(self, x):
        h = x
        for lstm in self.enc:
            h, (h_n, _) = lstm(h)
        return h_n[-1]  # [B, E]

    def forward(self, x):
        z = self.encode(x)
        h = z.unsqueeze(1).repeat(1, self.steps, 1)  # RepeatVector
        for lstm in self.dec:
            h, _ = lstm(h)
        return self.head(h)


def build(cfg, mode, *, compiled: bool = False, bf16: bool = False, backend: str = "", **_) -> Runner:
    """``torch@N`` (backend "N") runs with N intra-op threads instead of the
    default (one per core); set before every step, as the setting is global.
    ``bf16``: the forward pass and loss under bfloat16 autocast (module doc)."""
    threads = int(backend) if backend.isdigit() else _DEFAULT_THREADS
    torch.manual_seed(0)
    model = Autoencoder(cfg)
    x = torch.from_numpy(batch(cfg))
    versions = {"torch": torch.__version__, "threads": str(threads)} | ({"autocast": "bfloat16"} if bf16 else {})

    def autocast():  # float32 runs exactly as before: no autocast context at all
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    if mode == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.MSELoss()

        def train(x):
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = loss_fn(model(x), x)
            loss.backward()
            opt.step()
            return loss

        fn = torch.compile(train) if compiled else train

        def step():
            torch.set_num_threads(threads)
            fn(x).item()

        return Runner(step, versions)

    call = model.encode if mode == "encode" else model.forward
    call = torch.compile(call) if compiled else call

    def step():
        torch.set_num_threads(threads)
        with torch.no_grad(), autocast():
            call(x).float().sum().item()

    return Runner(step, versions)


def build_compiled(cfg, mode, **kw) -> Runner:
    return build(cfg, mode, compiled=True, **kw)


def build_bf16(cfg, mode, **kw) -> Runner:
    return build(cfg, mode, bf16=True, **kw)
