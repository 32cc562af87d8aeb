"""The per-example specification of every strategy and of the model.

The package writes each encoder and decoder strategy once, on a batch, on its
backend. This module is what that batched code is checked against: every
strategy written for ONE example, plainly, from ``kernels.reference``
(``lstm_stack``, ``reverse_valid``) and the cell; the tests compare
``jax.vmap`` of it with the package for values and gradients.

Each factory takes the arguments of the package factory of the same name
(``backend=``, ``init=`` and other options that do not change the maths are
accepted and ignored) and returns a per-example part:

    Encoder.apply(params, x[T, F] | tokens[T], length, initial=None, key=None) -> z[E]
    Decoder.apply(params, z[E], length, targets[T, K] | None, key | None, *,
                  steps, readout, head) -> logits[T, K]

``Model(encoder, decoder, head)`` runs one example through both
(``encode``, ``decode``, ``forward``); :func:`loss` is the model's loss
written from ``forward`` and vmapped over the batch. :func:`pair` builds the
package's part and its reference from one call.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

import jax_lstm_ae as la
from jax_lstm_ae.kernels.cell import LSTMState, dense, lstm_step
from jax_lstm_ae.kernels.reference import lstm_stack, reverse_valid


class Encoder(NamedTuple):
    apply: Callable
    dropout: float


class Decoder(NamedTuple):
    apply: Callable
    reverse_target: bool


def _cell(kw):
    """The options of a factory that the per-example stack takes."""
    return {"activation": kw.get("activation", "tanh"),
            "recurrent_activation": kw.get("recurrent_activation", "sigmoid"),
            "unroll": kw.get("unroll", 1)}


# ------------------------------------------------------------------ encoder
def _valid_mean(hs, length):
    """Mean of hs[T, H] over the first ``length`` steps (zeros for length 0)."""
    valid = jnp.arange(hs.shape[0]) < length
    total = jnp.sum(jnp.where(valid[:, None], hs, 0.0), axis=0)
    return total / jnp.maximum(jnp.asarray(length, hs.dtype), 1.0)


READOUTS = {
    "last": lambda last, hs, length: last,
    "mean": lambda last, hs, length: _valid_mean(hs, length),
    "last_mean": lambda last, hs, length: jnp.concatenate([last, _valid_mean(hs, length)]),
}


def lstm_encoder(sizes, *, bidirectional=False, latent_dim=None, vocab_size=None, pooling="last", remat=None,
                 dropout=0.0, **kw):
    del sizes, latent_dim  # read from the params
    cell = _cell(kw)

    def apply(params, x, length, initial=None, key=None):
        xs = params["embedding"][x] if vocab_size is not None else x
        hs, finals = lstm_stack(params["lstm"], xs, length, initial, remat=remat, dropout=dropout, key=key, **cell)
        top = finals[-1]
        last = jnp.concatenate([top[0].h, top[1].h]) if bidirectional else top.h
        z = READOUTS[pooling](last, hs, length)
        if "proj" in params:
            z = dense(z, params["proj"]["w"], params["proj"]["b"])
        return z

    return Encoder(apply, float(dropout))


# ------------------------------------------------------------------ decoders
def initial_states(params, z, sizes, state_init):
    """z[E] -> one (h, c) of [H] per layer: projected, or z copied into layer 0's h."""
    if state_init == "copy":
        return [LSTMState(z, jnp.zeros_like(z))] + [LSTMState(jnp.zeros(h, z.dtype), jnp.zeros(h, z.dtype))
                                                    for h in sizes[1:]]
    states = []
    for p, h in zip(params["proj"], sizes):
        hc = z @ p["w"] + p["b"]
        states.append(LSTMState(jnp.tanh(hc[:h]), hc[h:]))
    return states


def shift_right(seq):
    """[T, K]: row t holds seq[t-1], row 0 zeros (the go input)."""
    return jnp.concatenate([jnp.zeros_like(seq[:1]), seq[:-1]], axis=0)


def free_running(layers, states, length, steps, readout, acts, teacher=None, use=None, first_input=None):
    """Step every layer together; step t reads readout(h_top) of step t-1 (or
    the teacher's value where ``use[t]``); the first input is zeros (or
    ``first_input``). Steps at or past ``length`` keep the state, emit zeros."""
    def body(carry, inp):
        states, prev = carry
        x = prev if teacher is None else jnp.where(inp["use"], inp["teacher"], prev)
        new = []
        for layer, st in zip(layers, states):
            st, x = lstm_step(layer, st, dense(x, layer.w_i, layer.b), acts)
            new.append(st)
        valid = inp["t"] < length
        new = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, list(states))
        return (new, readout(x)), jnp.where(valid, x, 0.0)

    xs = {"t": jnp.arange(steps)}
    if teacher is not None:
        xs["teacher"], xs["use"] = shift_right(teacher), use
    prev = jnp.zeros(layers[0].w_i.shape[0], states[0].h.dtype) if first_input is None else first_input
    _, hs = lax.scan(body, (list(states), prev), xs)
    return hs


def repeat(sizes, *, remat=None, **kw):
    cell = _cell(kw)

    def apply(params, z, length, targets=None, key=None, *, steps, readout, head):
        l0 = params["lstm"][0]
        hs, _ = lstm_stack(params["lstm"], None, length, first_gates=z @ l0.w_i + l0.b, steps=steps, remat=remat,
                           **cell)
        return head(hs)

    return Decoder(apply, False)


def latent_as_sequence(sizes, *, steps, remat=None, **kw):
    cell = _cell(kw)

    def apply(params, z, length, targets=None, key=None, *, steps, readout, head):
        hs, _ = lstm_stack(params["lstm"], z.reshape(steps, -1), length, remat=remat, **cell)
        return head(hs)

    return Decoder(apply, False)


def unconditioned(sizes, *, state_init="project", remat=None, **kw):
    cell, sizes = _cell(kw), tuple(sizes)

    def apply(params, z, length, targets=None, key=None, *, steps, readout, head):
        states = initial_states(params["state"], z, sizes, state_init)
        hs, _ = lstm_stack(params["lstm"], None, length, states, first_gates=params["lstm"][0].b, steps=steps,
                           remat=remat, **cell)
        return head(hs)

    return Decoder(apply, False)


def _autoregressive(sizes, teacher_prob, always_teacher, reverse_target, state_init, first_output, remat, kw):
    cell, sizes = _cell(kw), tuple(sizes)
    acts = (cell["activation"], cell["recurrent_activation"])

    def apply(params, z, length, targets=None, key=None, *, steps, readout, head):
        layers = params["lstm"]
        states = initial_states(params["state"], z, sizes, state_init)
        if first_output == "state":  # output 0 from the initial state, then L-1 steps
            h0 = states[-1].h
            rest_len = jnp.maximum(length - 1, 0)
            if targets is not None:
                rest, _ = lstm_stack(layers, targets, rest_len, states, remat=remat, **cell)
            else:
                rest = free_running(layers, states, rest_len, steps, readout, acts, first_input=readout(h0))
            return head(jnp.concatenate([h0[None], rest[:-1]], axis=0))
        if targets is not None and always_teacher:
            hs, _ = lstm_stack(layers, shift_right(targets), length, states, remat=remat, **cell)
            return head(hs)
        if targets is not None and teacher_prob > 0.0:
            use = jax.random.bernoulli(key, teacher_prob, (steps,))
            return head(free_running(layers, states, length, steps, readout, acts, targets, use))
        return head(free_running(layers, states, length, steps, readout, acts))

    return Decoder(apply, reverse_target)


def teacher_forced(sizes, *, reverse_target=True, state_init="project", first_output="go_token", remat=None, **kw):
    return _autoregressive(sizes, 1.0, True, reverse_target, state_init, first_output, remat, kw)


def conditional(sizes, *, teacher_prob=0.0, reverse_target=False, state_init="project", remat=None, **kw):
    return _autoregressive(sizes, float(teacher_prob), False, reverse_target, state_init, "go_token", remat, kw)


def final_state(sizes, *, steps, latent_steps=1, **kw):
    cell = _cell(kw)
    n_steps, n_in = int(steps), int(latent_steps)

    def apply(params, z, length, targets=None, key=None, *, steps, readout, head):
        _, finals = lstm_stack(params["lstm"], z.reshape(n_in, -1), jnp.asarray(n_in), **cell)
        return head(finals[-1].h.reshape(n_steps, -1))

    return Decoder(apply, False)


def pair(name, *args, **kw):
    """(the package's part, its per-example reference), from one factory call."""
    return getattr(la.nn, name)(*args, **kw), globals()[name](*args, **kw)


# ------------------------------------------------------------------ model
class Model(NamedTuple):
    """One example through encoder, decoder and head (params as the package's model)."""

    encoder: Encoder
    decoder: Decoder
    head: la.Head

    def fns(self, params):
        """(readout h[H] -> prediction[K], head h[T, H] -> logits[T, K])."""
        def head(h):
            return self.head.apply(params["head"], h)

        return (lambda h: self.head.activate(head(h))), head

    def encode(self, params, x, length, initial=None, key=None):
        return self.encoder.apply(params["encoder"], x, length, initial, key)

    def decode(self, params, z, length, steps, targets=None, key=None):
        """z[E] -> logits[T, K] in the input's order, zero on padding."""
        readout, head = self.fns(params)
        if targets is not None and self.decoder.reverse_target:
            targets = reverse_valid(targets, length)
        logits = self.decoder.apply(params["decoder"], z, length, targets, key, steps=steps, readout=readout,
                                    head=head)
        if self.decoder.reverse_target:
            logits = reverse_valid(logits, length)
        return jnp.where((jnp.arange(steps) < length)[:, None], logits, 0.0)

    def forward(self, params, x, length, key=None, train=False, inputs=None):
        """(z[E], logits[T, K]); in training an encoder with dropout draws its
        masks from a key split off ``key``, the decoder from the rest."""
        enc_key = None
        if train and key is not None and self.encoder.dropout:
            enc_key, key = jax.random.split(key)
        z = self.encode(params, x if inputs is None else inputs, length, None, enc_key)
        targets = self.head.target(x) if train else None
        return z, self.decode(params, z, length, x.shape[0], targets, key)

    def errors(self, params, x, length, key=None, train=False, inputs=None):
        """Per-step errors [T], zero on padding."""
        _, logits = self.forward(params, x, length, key, train, inputs)
        return jnp.where(jnp.arange(x.shape[0]) < length, self.head.error(logits, x), 0.0)


def model_pair(encoder, decoder, head=None, *, features=None):
    """(package model, reference Model) from two :func:`pair` results."""
    model = la.make_autoencoder(encoder[0], decoder[0], head, features=features)
    return model, Model(encoder[1], decoder[1], model.head)


def encode(ref: Model, params, x, lengths):
    """z[B, E] as ``jax.vmap`` of the per-example encoder."""
    return jax.vmap(ref.encode, in_axes=(None, 0, 0))(params, x, lengths)


def forward(ref: Model, params, x, lengths, keys=None, train=False):
    """(z[B, E], logits[B, T, K]) as ``jax.vmap`` of the per-example forward."""
    return jax.vmap(lambda xi, li, ki: ref.forward(params, xi, li, ki, train),
                    in_axes=(0, 0, None if keys is None else 0))(x, lengths, keys)


def loss(ref: Model, params, x, lengths, key=None, train=True, inputs=None):
    """The model's loss from the per-example forward: the sum of the valid
    steps' errors over the sum of lengths; one key per example from ``key``."""
    keys = None if key is None else jax.random.split(key, x.shape[0])
    err = jax.vmap(lambda xi, li, ki, ii: ref.errors(params, xi, li, ki, train, ii),
                   in_axes=(0, 0, None if keys is None else 0, None if inputs is None else 0))(x, lengths, keys, inputs)
    return jnp.sum(err) / jnp.maximum(jnp.sum(lengths), 1).astype(err.dtype)


# ------------------------------------------------------------------ composite
def composite_loss(encoder: Encoder, reconstructor: Decoder | None, predictor: Decoder | None, head, horizon,
                   predict_weight, params, x, lengths, key=None, train=True, inputs=None):
    """The composite model's loss (``nn.composite``) from one example at a
    time: each row's past (its first length - K steps) is encoded and
    reconstructed, its K-step future predicted from the same z."""
    k, t = horizon, x.shape[1]

    def one(xi, length, ki, ii):
        past = jnp.clip(length - k, 0, t - k)
        z = encoder.apply(params["encoder"], xi if ii is None else ii, past)
        k_r, k_p = (None, None) if ki is None else tuple(jax.random.split(ki))
        err_r, err_p = jnp.zeros((t,), jnp.float32), jnp.zeros((k,), jnp.float32)
        if reconstructor is not None:
            m = Model(encoder, reconstructor, head)
            p = {"encoder": params["encoder"], **params["reconstruct"]}
            logits = m.decode(p, z, past, t, head.target(xi) if train else None, k_r)
            err_r = jnp.where(jnp.arange(t) < past, head.error(logits, xi), 0.0)
        if predictor is not None:
            future = lax.dynamic_slice_in_dim(xi, past, k, axis=0)
            m = Model(encoder, predictor, head)
            p = {"encoder": params["encoder"], **params["predict"]}
            logits = m.decode(p, z, jnp.asarray(k), k, head.target(future) if train else None, k_p)
            err_p = jnp.where(length >= k, head.error(logits, future), 0.0)
        return err_r, err_p

    keys = None if key is None else jax.random.split(key, x.shape[0])
    err_r, err_p = jax.vmap(one, in_axes=(0, 0, None if keys is None else 0, None if inputs is None else 0))(
        x, lengths, keys, inputs)
    past = jnp.clip(lengths - k, 0, None)
    r = jnp.sum(err_r) / jnp.maximum(jnp.sum(past), 1).astype(err_r.dtype)
    p = jnp.sum(err_p) / jnp.maximum(jnp.sum(lengths >= k) * k, 1).astype(err_p.dtype)
    return r + predict_weight * p
