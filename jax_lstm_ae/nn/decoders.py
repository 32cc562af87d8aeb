"""Decoder strategies: z[B, E] -> logits[B, T, K] through the top decoder layer.

Every decoder is a :class:`Decoder` NamedTuple with the same signature, so
swapping one for another is replacing one value:

    apply(params, z[B, E], lengths[B], targets[B, T, K] | None,
          keys[B] | None, *, steps, readout, head) -> logits[B, T, K]

Each strategy is written once, on a batch, and runs its LSTM stack on the
decoder's backend (``backends.lstm_stack_batched``; ``backend="reference"``
is ``jax.vmap`` of the plain scans). Where a strategy's loop is inherently
per example (the free-running loop at inference and under scheduled
sampling, ``teacher_forced(first_output="state")``) that loop is written once
for one example and vmapped inside ``apply``. The per-example specification
every decoder is tested against (values and gradients, ``jax.vmap``) lives
in ``tests/reference_model.py``.

``steps`` is T (static). ``head(h[..., H]) -> logits[..., K]`` is the
model's output layer, shared, not owned, by the decoder: it is applied inside
each checkpointed chunk under ``remat`` (``lstm_stack(out=)``), so training
with remat never keeps the top layer's outputs hs. ``readout(h[H]) -> [K]``
maps one example's hidden state to the model's prediction in *feedback space* (the head and its
activation: values, probabilities, or a softmax over V); only the
autoregressive strategies call it. ``targets`` are the true values in the
same space (K = F, or V for tokens); teacher forcing and scheduled sampling
read them. ``keys`` are one PRNG key per example (scheduled sampling).
For one example add a batch axis: ``apply(params, z[None], length[None], ...)[0]``.

| strategy            | input at step t                        | initial state |
| ------------------- | -------------------------------------- | ------------- |
| repeat              | z (RepeatVector)                       | zeros         |
| latent_as_sequence  | z.reshape(T, E // T)[t]                | zeros         |
| teacher_forced      | target[t-1] in training, prediction[t-1] at inference (0 at t=0) | from z |
| conditional         | prediction[t-1] (scheduled sampling: target with prob p) | from z |
| unconditioned       | nothing (zero-width input)             | from z        |
| final_state         | z.reshape(S, E // S); hs = h_final.reshape(T, W) | zeros |

``teacher_forced(first_output="state")`` is EncDec-AD as the paper writes it:
output 0 from the initial state, then L-1 steps (see its docstring).

Steps at or past ``length`` keep the carry and emit zeros (see ``kernels.reference``).
Every factory takes ``activation=`` and ``recurrent_activation=`` (the
cell's non-linearities, Keras's names; default tanh and sigmoid), ``backend=`` (how ``apply`` runs its LSTM layers:
``"auto"``, ``"reference"``, ``"fast"``, ...; ``backends.dispatch`` module doc) and ``remat=`` (chunked
checkpointing of the stack for long sequences); the free-running loop of the
conditional and teacher-forced decoders at inference steps cells directly.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jax_lstm_ae.backends import check_backend, lstm_stack_batched
from jax_lstm_ae.kernels.cell import DEFAULT_ACTIVATIONS, Init, LSTMState, check_activations, dense, lstm_step
from jax_lstm_ae.kernels.reference import init_stack, lstm_stack
from jax_lstm_ae.nn.encoder import _check_init, _check_sizes, _dense_init
from jax_lstm_ae._typing import Array, Latent, PRNGKey, PyTree

Readout = Callable[[Array], Array]
StateInit = Literal["project", "copy"]


class Decoder(NamedTuple):
    """``init(key, latent_dim, feedback_dim) -> params`` and the batched
    ``apply`` (module doc)."""

    init: Callable[[PRNGKey, int, int], PyTree]
    apply: Callable[..., Array]
    name: str
    sizes: tuple[int, ...]
    reverse_target: bool  # the model reverses the valid part of the target
    # width of each row of hs (what the head reads) when it is not sizes[-1]
    # (final_state: sizes[-1] // T); read it with output_width(decoder)
    out_width: int | None = None


def output_width(decoder: Decoder) -> int:
    """W, the width of each row hs[t] the decoder hands to the head."""
    return decoder.sizes[-1] if decoder.out_width is None else decoder.out_width


def _cell(activation: str, recurrent_activation: str) -> dict[str, str]:
    """The cell's non-linearities as stack keywords (checked here, at build time)."""
    check_activations(activation, recurrent_activation)
    return {"activation": activation, "recurrent_activation": recurrent_activation}


# ----------------------------------------------------------------- state from z
def _state_init_params(key: PRNGKey, e: int, sizes: tuple[int, ...], mode: StateInit) -> PyTree:
    if mode == "copy":
        if sizes[0] != e:
            raise ValueError(
                f"state_init='copy' puts z into the first decoder layer's h, so sizes[0] must equal E={e}, "
                f"got sizes={sizes}; use state_init='project'"
            )
        return {}
    if mode == "project":
        return {"proj": [_dense_init(k, e, 2 * h) for k, h in zip(jax.random.split(key, len(sizes)), sizes)]}
    raise ValueError(f"unknown state_init {mode!r}; choose 'project' or 'copy'")


def _initial_states(params: PyTree, z: Latent, sizes: tuple[int, ...], mode: StateInit) -> list[LSTMState]:
    """z[..., E] -> one state of [..., H] per layer (one example, or a batch).
    ``project``: (h, c) = (tanh(z W_h + b_h), z W_c + b_c) per layer.
    ``copy``: h = z in layer 0 (EncDec-AD: decoder starts from the encoder's
    final state), every other h and c zero."""
    lead = z.shape[:-1]
    if mode == "copy":
        states = [LSTMState(z, jnp.zeros_like(z))]
        return states + [LSTMState(jnp.zeros((*lead, h), z.dtype), jnp.zeros((*lead, h), z.dtype))
                         for h in sizes[1:]]
    out = []
    for p, h in zip(params["proj"], sizes):
        hc = dense(z, p["w"], p["b"])
        out.append(LSTMState(jnp.tanh(hc[..., :h]), hc[..., h:]))
    return out


# --------------------------------------------------------------- decoders
def repeat(
    sizes: Sequence[int], *, init: Init = "uniform", unroll: int = 1, backend: str = "auto", remat: int | None = None,
    activation: str = "tanh", recurrent_activation: str = "sigmoid",
) -> Decoder:
    """RepeatVector decoder (Keras example, the seed's RecurrentAutoencoder).

    Layer 0 sees z at every step from a zero state, so its input gates
    ``z @ w_i + b`` are computed once and used at every step.
    """
    sizes = _check_sizes(sizes, "repeat")
    _check_init(init)
    check_backend(backend)
    cell = _cell(activation, recurrent_activation)

    def init_fn(key, latent_dim, feedback_dim):
        del feedback_dim
        return {"lstm": init_stack(key, latent_dim, sizes, init=init)}

    def apply_fn(params, z, lengths, targets=None, keys=None, *, steps, readout, head):
        del targets, keys, readout
        with jax.named_scope("decoder_repeat"):
            l0 = params["lstm"][0]
            hs, _ = lstm_stack_batched(params["lstm"], None, lengths, first_gates=dense(z, l0.w_i, l0.b), steps=steps,
                                       unroll=unroll, backend=backend, remat=remat, out=head, **cell)
            return hs

    return Decoder(init_fn, apply_fn, "repeat", sizes, False)


def latent_as_sequence(
    sizes: Sequence[int], *, steps: int, init: Init = "uniform", unroll: int = 1,
    backend: str = "auto", remat: int | None = None, activation: str = "tanh", recurrent_activation: str = "sigmoid",
) -> Decoder:
    """z[E] reshaped into ``steps`` rows of E // steps features and fed as the
    input sequence (the Keras answer's ``Reshape((10, 2))``). T must equal
    ``steps`` and E must be divisible by it."""
    sizes = _check_sizes(sizes, "latent_as_sequence")
    _check_init(init)
    check_backend(backend)
    cell = _cell(activation, recurrent_activation)
    n_steps = int(steps)
    if n_steps < 1:
        raise ValueError(f"latent_as_sequence needs steps >= 1, got {steps}")

    def init_fn(key, latent_dim, feedback_dim):
        del feedback_dim
        if latent_dim % n_steps:
            raise ValueError(
                f"latent_as_sequence reshapes z[E={latent_dim}] into {n_steps} steps, "
                f"so E must be divisible by {n_steps}"
            )
        return {"lstm": init_stack(key, latent_dim // n_steps, sizes, init=init)}

    def apply_fn(params, z, lengths, targets=None, keys=None, *, steps, readout, head):
        del targets, keys, readout
        _check_steps("latent_as_sequence", n_steps, steps)
        with jax.named_scope("decoder_latent_as_sequence"):
            hs, _ = lstm_stack_batched(params["lstm"], z.reshape(z.shape[0], n_steps, -1), lengths, unroll=unroll,
                                       backend=backend, remat=remat, out=head, **cell)
            return hs

    return Decoder(init_fn, apply_fn, "latent_as_sequence", sizes, False)


def unconditioned(
    sizes: Sequence[int], *, state_init: StateInit = "project", init: Init = "uniform", unroll: int = 1,
    backend: str = "auto", remat: int | None = None, activation: str = "tanh", recurrent_activation: str = "sigmoid",
) -> Decoder:
    """Srivastava et al. 2015's unconditioned decoder: no input, state from z."""
    sizes = _check_sizes(sizes, "unconditioned")
    _check_init(init)
    check_backend(backend)
    cell = _cell(activation, recurrent_activation)

    def init_fn(key, latent_dim, feedback_dim):
        del feedback_dim
        k_s, k_l = jax.random.split(key)
        return {"state": _state_init_params(k_s, latent_dim, sizes, state_init),
                "lstm": init_stack(k_l, 0, sizes, init=init)}

    def apply_fn(params, z, lengths, targets=None, keys=None, *, steps, readout, head):
        del targets, keys, readout
        with jax.named_scope("decoder_unconditioned"):
            states = _initial_states(params["state"], z, sizes, state_init)
            b = params["lstm"][0].b
            hs, _ = lstm_stack_batched(params["lstm"], None, lengths, states,
                                       first_gates=jnp.broadcast_to(b, (z.shape[0], b.shape[0])), steps=steps,
                                       unroll=unroll, backend=backend, remat=remat, out=head, **cell)
            return hs

    return Decoder(init_fn, apply_fn, "unconditioned", sizes, False)


def _check_steps(name: str, built: int, steps: int) -> None:
    """A decoder that fixes T at build time refuses data of another length."""
    if steps != built:
        raise ValueError(
            f"{name} was built for T={built} steps but the data has T={steps}; "
            f"pad or crop the data to T={built} or rebuild the decoder with steps={steps}"
        )


def _shift_right(seq: Array) -> Array:
    """[..., T, K] -> [..., T, K]: row t holds seq[t-1], row 0 zeros."""
    return jnp.concatenate([jnp.zeros_like(seq[..., :1, :]), seq[..., :-1, :]], axis=-2)


def _free_running(params, states, length, steps, readout, feedback_dim, teacher=None, use_teacher=None, unroll=1,
                  acts=DEFAULT_ACTIVATIONS, first_input=None):
    """Step all layers together, feeding back readout(h_top) (or the teacher's
    value where ``use_teacher[t]``). Input projections cannot be hoisted here:
    each step's input depends on the previous step's output. ``first_input``
    [K]: the input at step 0 (default zeros, the go token)."""
    layers = params["lstm"]
    dtype = states[0].h.dtype

    def body(carry, inp):
        layer_states, prev = carry
        t = inp["t"]
        x = prev
        if teacher is not None:
            x = jnp.where(inp["use"], inp["teacher"], prev)
        new_states = []
        for layer, st in zip(layers, layer_states):
            st, x = lstm_step(layer, st, dense(x, layer.w_i, layer.b), acts)
            new_states.append(st)
        valid = t < length
        new_states = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new_states, list(layer_states))
        pred = readout(x)
        return (new_states, pred), jnp.where(valid, x, jnp.zeros_like(x))

    xs = {"t": jnp.arange(steps)}
    if teacher is not None:
        xs["teacher"] = _shift_right(teacher)
        xs["use"] = use_teacher
    prev0 = jnp.zeros((feedback_dim,), dtype) if first_input is None else first_input
    init = (list(states), prev0)
    _, hs = lax.scan(body, init, xs, unroll=unroll)
    return hs


def _first_from_state(params, states, length, targets, *, steps, readout, head, unroll, remat, cell):
    """EncDec-AD as the paper writes it: output 0 is read from the initial
    state, x'(0) = head(h_top(0)); then L-1 steps, step t >= 1 fed target[t-1]
    (training) or x'(t-1) (inference). ``hs[0]`` is the top layer's initial h."""
    h0 = states[-1].h
    rest_len = jnp.maximum(length - 1, 0)
    if targets is not None:
        # Step t >= 1 reads targets[t-1]: a plain scan over targets, its last
        # step past every valid length (rest_len <= T - 1), so it is dropped.
        rest, _ = lstm_stack(params["lstm"], targets, rest_len, states, unroll=unroll, remat=remat, **cell)
    else:
        feedback_dim = params["lstm"][0].w_i.shape[0]
        rest = _free_running(params, states, rest_len, steps, readout, feedback_dim, unroll=unroll,
                             acts=(cell["activation"], cell["recurrent_activation"]), first_input=readout(h0))
    hs = jnp.concatenate([h0[None, :], rest[:-1]], axis=0)
    return hs if head is None else head(hs)


def _autoregressive(
    name, sizes, state_init, init, unroll, reverse_target, teacher_prob, always_teacher, backend, remat, cell,
    first_output="go_token",
):
    if first_output not in ("go_token", "state"):
        raise ValueError(f"first_output must be 'go_token' or 'state' (the EncDec-AD paper's), got {first_output!r}")
    sizes = _check_sizes(sizes, name)
    _check_init(init)
    check_backend(backend)
    acts = (cell["activation"], cell["recurrent_activation"])

    def init_fn(key, latent_dim, feedback_dim):
        k_s, k_l = jax.random.split(key)
        return {"state": _state_init_params(k_s, latent_dim, sizes, state_init),
                "lstm": init_stack(k_l, feedback_dim, sizes, init=init)}

    def free_running(params, z, length, targets, key, steps, readout):
        """One example, stepping cells: inference, or scheduled sampling."""
        states = _initial_states(params["state"], z, sizes, state_init)
        feedback_dim = params["lstm"][0].w_i.shape[0]
        if targets is not None and teacher_prob > 0.0:
            if key is None:
                raise ValueError(f"{name} with teacher_prob > 0 needs a PRNG key when targets are given")
            use = jax.random.bernoulli(key, teacher_prob, (steps,))
            return _free_running(params, states, length, steps, readout, feedback_dim, targets, use, unroll, acts)
        return _free_running(params, states, length, steps, readout, feedback_dim, unroll=unroll, acts=acts)

    def first_from_state(params, z, length, targets, steps, readout, head):
        """One example of the paper's variant (``first_output="state"``)."""
        states = _initial_states(params["state"], z, sizes, state_init)
        return _first_from_state(params, states, length, targets, steps=steps, readout=readout, head=head,
                                 unroll=unroll, remat=remat, cell=cell)

    def apply_fn(params, z, lengths, targets=None, keys=None, *, steps, readout, head):
        with jax.named_scope(f"decoder_{name}"):
            if first_output == "state":
                # Output 0 from the state, then L-1 steps: written for one example, vmapped.
                run = jax.vmap(lambda zz, ll, tt: first_from_state(params, zz, ll, tt, steps, readout, head),
                               in_axes=(0, 0, None if targets is None else 0))
                return run(z, lengths, targets)
            if targets is not None and always_teacher:
                # Every input is known: one hoisted projection and the batched stack.
                states = _initial_states(params["state"], z, sizes, state_init)
                hs, _ = lstm_stack_batched(params["lstm"], _shift_right(targets), lengths, states, unroll=unroll,
                                           backend=backend, remat=remat, out=head, **cell)
                return hs
            # Each step's input is the previous output: a loop over cells, written for one example, vmapped.
            run = jax.vmap(lambda zz, ll, tt, kk: free_running(params, zz, ll, tt, kk, steps, readout),
                           in_axes=(0, 0, None if targets is None else 0, None if keys is None else 0))
            return head(run(z, lengths, targets, keys))

    return Decoder(init_fn, apply_fn, name, sizes, reverse_target)


def teacher_forced(
    sizes: Sequence[int],
    *,
    reverse_target: bool = True,
    state_init: StateInit = "project",
    init: Init = "uniform",
    unroll: int = 1,
    backend: str = "auto",
    remat: int | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    first_output: Literal["go_token", "state"] = "go_token",
) -> Decoder:
    """EncDec-AD (Malhotra et al. 2016, arXiv 1607.00148) and its common
    go-token variant.

    The state starts from z; with ``targets`` (training) the decoder is fed
    the true previous value, without them (inference) the previous prediction.
    ``reverse_target``: reconstruct the valid part of the sequence in reverse
    order, as the paper does; the model un-reverses the output, so
    ``reconstruct`` is always in the input's order.

    ``first_output`` says where output 0 (x'(L) in the paper's reversed
    order) comes from:

    - ``"go_token"`` (default, the common seq2seq variant): L decoder steps,
      step 0 fed a zero "go" input, step t fed target[t-1]; output t is
      head(h(t+1)).
    - ``"state"`` (the paper's): output 0 is read straight from the initial
      state, x'(L) = head(h_D(L)), then L-1 steps follow, step t fed
      target[t-1] (training) or x'(t-1) (inference). With
      ``state_init='copy'`` (needs sizes[0] == E) and one layer this is the
      paper exactly: h_D(L) = h_E(L).
    """
    return _autoregressive("teacher_forced", sizes, state_init, init, unroll, reverse_target, 1.0, True, backend, remat,
                           _cell(activation, recurrent_activation), first_output)


def conditional(
    sizes: Sequence[int],
    *,
    teacher_prob: float = 0.0,
    reverse_target: bool = False,
    state_init: StateInit = "project",
    init: Init = "uniform",
    unroll: int = 1,
    backend: str = "auto",
    remat: int | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> Decoder:
    """Srivastava et al. 2015's conditional decoder: free-running, each step
    fed the previous prediction. ``teacher_prob`` > 0 turns on scheduled
    sampling in training (Bengio et al. 2015): at each step, with that
    probability, the true previous value is fed instead (needs a key)."""
    if not 0.0 <= teacher_prob <= 1.0:
        raise ValueError(f"teacher_prob must lie in [0, 1], got {teacher_prob}")
    return _autoregressive(
        "conditional", sizes, state_init, init, unroll, reverse_target, float(teacher_prob), False, backend, remat,
        _cell(activation, recurrent_activation),
    )


def final_state(
    sizes: Sequence[int], *, steps: int, latent_steps: int = 1, init: Init = "uniform", unroll: int = 1,
    backend: str = "auto", activation: str = "tanh", recurrent_activation: str = "sigmoid",
) -> Decoder:
    """An LSTM stack over z[E] read as ``latent_steps`` rows of E //
    latent_steps features, whose top layer's *final state* h[sizes[-1]] is
    reshaped into ``steps`` = T rows of W = sizes[-1] // T (the Keras answer's
    ``Reshape((10, 2)) -> LSTM(50) -> Reshape((10, 5))``: latent_steps=10,
    sizes=(50,), steps=10, W=5).

        hs = h_final.reshape(T, W)          # [T, W]; the head reads rows of W

    With the identity head, W must equal F. The latent sequence is always
    read in full; the model zeroes the rows past each example's length.
    """
    sizes = _check_sizes(sizes, "final_state")
    _check_init(init)
    check_backend(backend)
    cell = _cell(activation, recurrent_activation)
    n_steps, n_in = int(steps), int(latent_steps)
    if n_steps < 1 or n_in < 1:
        raise ValueError(f"final_state needs steps >= 1 and latent_steps >= 1, got {steps}, {latent_steps}")
    if sizes[-1] % n_steps:
        raise ValueError(
            f"final_state reshapes the top layer's state [{sizes[-1]}] into T={n_steps} rows, "
            f"so sizes[-1] must be a multiple of {n_steps} (T * W)"
        )
    width = sizes[-1] // n_steps

    def init_fn(key, latent_dim, feedback_dim):
        del feedback_dim
        if latent_dim % n_in:
            raise ValueError(
                f"final_state reads z[E={latent_dim}] as {n_in} steps, so E must be divisible by {n_in}"
            )
        return {"lstm": init_stack(key, latent_dim // n_in, sizes, init=init)}

    def apply_fn(params, z, lengths, targets=None, keys=None, *, steps, readout=None, head):
        del targets, keys, readout
        _check_steps("final_state", n_steps, steps)
        with jax.named_scope("decoder_final_state"):
            full = jnp.full(lengths.shape, n_in, jnp.int32)  # the latent sequence is read in full
            _, finals = lstm_stack_batched(params["lstm"], z.reshape(z.shape[0], n_in, -1), full, unroll=unroll,
                                           backend=backend, **cell)
            return head(finals[-1].h.reshape(z.shape[0], n_steps, width))

    return Decoder(init_fn, apply_fn, "final_state", sizes, False, out_width=width)


DECODERS = {
    "repeat": repeat,
    "latent_as_sequence": latent_as_sequence,
    "teacher_forced": teacher_forced,
    "conditional": conditional,
    "unconditioned": unconditioned,
}  # the command line's choices; final_state (a Keras port) is built in code
