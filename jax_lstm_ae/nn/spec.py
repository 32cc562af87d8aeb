"""The model as a value: frozen, hashable, validated specs and ``build``.

    spec = ModelSpec(features=3, embedding_dim=16, encoder=EncoderSpec(hidden=(32,)))
    model = build(spec)                                    # the runnable Autoencoder
    spec2 = dataclasses.replace(spec, decoder=DecoderSpec(DecoderKind.TEACHER_FORCED))
    spec.to_dict() == ModelSpec.from_dict(spec.to_dict()).to_dict()   # config.json's "model"

Every choice is a field with its default here, once; closed sets are Enums
(``str`` Enums, so ``Pooling.MEAN == "mean"``). The layer sizes mirror, as
the seeds' models do: the encoder runs ``(*encoder.hidden, E)``, the decoder
``(E, *decoder.hidden)`` where ``decoder.hidden=None`` means the encoder's
hidden sizes reversed (F -> 2E -> E -> E -> 2E -> F for ``hidden=(2E,)``).
A readout wider than E (bidirectional, or ``pooling="last_mean"``) is
projected to E by a Dense layer (``EncoderSpec.project`` says otherwise: the
latent is then the readout itself, e.g. 2E wide).

``build(spec)`` is memoised on the spec (equal specs give the same model
object), so jitted functions keyed on the model compile once per spec, and a
``ModelSpec`` that exists is one that builds: construction checks it.
Building starts no JAX runtime: ``backend="auto"`` is resolved when traced.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any

from jax_lstm_ae.backends import Backend
from jax_lstm_ae.kernels.cell import ACTIVATIONS, INITS
from jax_lstm_ae.nn.decoders import (
    conditional,
    final_state,
    latent_as_sequence,
    repeat,
    teacher_forced,
    unconditioned,
)
from jax_lstm_ae.nn.encoder import lstm_encoder
from jax_lstm_ae.nn.heads import identity, linear, sigmoid, softmax
from jax_lstm_ae.nn.model import Autoencoder, make_autoencoder


class SpecError(ValueError):
    """A spec field is unknown, ill-typed or out of range; the message names it."""


class Pooling(str, enum.Enum):
    """How the encoder's top layer becomes one vector (``lstm_encoder``)."""

    LAST = "last"
    MEAN = "mean"
    LAST_MEAN = "last_mean"


class DecoderKind(str, enum.Enum):
    """The decoder strategies (``nn.decoders`` module doc)."""

    REPEAT = "repeat"
    LATENT_AS_SEQUENCE = "latent_as_sequence"
    TEACHER_FORCED = "teacher_forced"
    CONDITIONAL = "conditional"
    UNCONDITIONED = "unconditioned"
    FINAL_STATE = "final_state"

    @property
    def fixes_t(self) -> bool:
        """Whether the decoder's T is fixed when it is built (``DecoderSpec.steps``), not read from the input."""
        return self in (DecoderKind.LATENT_AS_SEQUENCE, DecoderKind.FINAL_STATE)


class HeadKind(str, enum.Enum):
    LINEAR = "linear"  # Dense H -> F, mse / mae
    SIGMOID = "sigmoid"  # Dense H -> F logits, binary CE
    SOFTMAX = "softmax"  # Dense H -> V logits, CE (token inputs)
    IDENTITY = "identity"  # the decoder's top output is the reconstruction (H == F)


class Loss(str, enum.Enum):
    MSE = "mse"
    MAE = "mae"
    BCE = "bce"  # binary cross-entropy: the sigmoid head's, or Keras's on the identity head's outputs
    CE = "ce"  # cross-entropy of the true token: the softmax head's


class StateInit(str, enum.Enum):
    PROJECT = "project"  # (h, c) from a Dense of z per layer
    COPY = "copy"  # h of layer 0 = z (EncDec-AD)


class FirstOutput(str, enum.Enum):
    GO_TOKEN = "go_token"
    STATE = "state"  # the EncDec-AD paper's: output 0 read from the initial state


class DType(str, enum.Enum):
    """Parameters' and state's dtype. bfloat16 matmul operands are a
    backend (``fast_bf16`` on CPU, ``pallas_bf16``), not a dtype."""

    FLOAT32 = "float32"


Init = enum.Enum("Init", {name.upper(): name for name in INITS}, type=str)
Init.__doc__ = "Weight initialisation: uniform (PyTorch) or orthogonal (Keras)."
Activation = enum.Enum("Activation", {name.upper(): name for name in ACTIVATIONS}, type=str)
Activation.__doc__ = "A cell non-linearity, Keras's names (``kernels.cell.ACTIVATIONS``)."


# ----------------------------------------------------------------- the machinery
def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the type ``hint`` says, strictly (no bool for int, no str for a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value.value if isinstance(value, enum.Enum) else value)
        except ValueError:
            allowed = ", ".join(m.value for m in hint)
            raise SpecError(f"{where}: {value!r} is not one of {allowed}") from None
    if isinstance(hint, type) and issubclass(hint, Spec):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return hint.from_dict(value, where)
        raise SpecError(f"{where}: expected a {hint.__name__} or its dict, got {value!r}")
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: no coercion for {hint!r}")  # a spec class declared an unsupported type


def plain(value: Any) -> Any:
    """A field value in JSON form."""
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


class Spec:
    """Shared by the spec dataclasses: coercion on construction, the dict form."""

    _name = ""  # the section's name in messages

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(getattr(self, f.name), hints[f.name], f"{self._name}.{f.name}"))
        self._check()

    def _check(self) -> None:
        """Range checks across fields; raise SpecError naming the field."""

    def to_dict(self) -> dict:
        """The JSON form (what config.json stores); ``from_dict`` reads it back exactly."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None):
        """Read the JSON form; an unknown or ill-typed field is refused by name.
        Missing fields take their defaults."""
        where = where or cls._name
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected an object, got {d!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SpecError(f"{where}.{unknown[0]}: unknown field; known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in d.items()}
        try:
            return cls(**kwargs)
        except TypeError as e:  # a required field is missing
            raise SpecError(f"{where}: {e}") from None

    def replace(self, **changes):
        """``dataclasses.replace``, checked like construction."""
        return dataclasses.replace(self, **changes)


def _positive(where: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise SpecError(f"{where}: must be >= 1, got {value}")


# ----------------------------------------------------------------- the specs
@dataclasses.dataclass(frozen=True)
class CellSpec(Spec):
    """What every LSTM cell of the model shares."""

    init: Init = Init.ORTHOGONAL
    activation: Activation = Activation.TANH
    recurrent_activation: Activation = Activation.SIGMOID
    unroll: int = 1  # lax.scan's unroll factor
    remat: int | None = None  # checkpoint the stacks in chunks of this many steps (long T: training memory)
    _name = "model.cell"

    def _check(self) -> None:
        _positive(f"{self._name}.unroll", self.unroll)
        _positive(f"{self._name}.remat", self.remat)


@dataclasses.dataclass(frozen=True)
class EncoderSpec(Spec):
    """The encoder: LSTM layers ``(*hidden, E)``, read out by ``pooling``."""

    hidden: tuple[int, ...] = ()  # layer sizes below the top one (which is E)
    bidirectional: bool = False
    pooling: Pooling = Pooling.LAST
    vocab_size: int | None = None  # V: inputs are integer tokens [T] embedded by a [V, token_dim] table
    token_dim: int = 32
    dropout: float = 0.0  # between layers, in training (PyTorch's nn.LSTM(dropout=))
    project: bool | None = None  # a Dense readout -> E; None: only when the readout is wider than E
    _name = "model.encoder"

    def _check(self) -> None:
        for i, h in enumerate(self.hidden):
            _positive(f"{self._name}.hidden[{i}]", h)
        if self.vocab_size is not None and self.vocab_size < 2:
            raise SpecError(f"{self._name}.vocab_size: must be >= 2, got {self.vocab_size}")
        _positive(f"{self._name}.token_dim", self.token_dim)
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError(f"{self._name}.dropout: a probability in [0, 1), got {self.dropout}")


@dataclasses.dataclass(frozen=True)
class DecoderSpec(Spec):
    """The decoder: a strategy and LSTM layers ``(E, *hidden)``."""

    kind: DecoderKind = DecoderKind.REPEAT
    hidden: tuple[int, ...] | None = None  # layers after the first; None: the encoder's hidden, reversed
    steps: int | None = None  # T, for the decoders that fix it when built (latent_as_sequence, final_state)
    latent_steps: int = 1  # final_state: z read as this many steps
    teacher_prob: float = 0.0  # conditional: scheduled sampling's probability of the true previous value
    reverse_target: bool | None = None  # None: True for teacher_forced (EncDec-AD), else False
    state_init: StateInit = StateInit.PROJECT
    first_output: FirstOutput = FirstOutput.GO_TOKEN  # teacher_forced only
    _name = "model.decoder"

    def _check(self) -> None:
        w = self._name
        for i, h in enumerate(self.hidden or ()):
            _positive(f"{w}.hidden[{i}]", h)
        _positive(f"{w}.steps", self.steps)
        _positive(f"{w}.latent_steps", self.latent_steps)
        if not 0.0 <= self.teacher_prob <= 1.0:
            raise SpecError(f"{w}.teacher_prob: a probability in [0, 1], got {self.teacher_prob}")
        k = self.kind
        if k.fixes_t and self.steps is None:
            raise SpecError(f"{w}.steps: the {k.value} decoder fixes T when built; give steps=T")
        if self.teacher_prob and k is not DecoderKind.CONDITIONAL:
            raise SpecError(f"{w}.teacher_prob: only the conditional decoder samples its inputs, not {k.value}")
        if self.first_output is not FirstOutput.GO_TOKEN and k is not DecoderKind.TEACHER_FORCED:
            raise SpecError(f"{w}.first_output: only the teacher_forced decoder has it, not {k.value}")
        if self.reverse_target and k not in (DecoderKind.TEACHER_FORCED, DecoderKind.CONDITIONAL):
            raise SpecError(f"{w}.reverse_target: only the teacher_forced and conditional decoders reverse")
        if self.state_init is StateInit.COPY and k in (DecoderKind.REPEAT, DecoderKind.LATENT_AS_SEQUENCE,
                                                       DecoderKind.FINAL_STATE):
            raise SpecError(f"{w}.state_init: the {k.value} decoder starts from zeros; leave state_init 'project'")


@dataclasses.dataclass(frozen=True)
class HeadSpec(Spec):
    """The output layer and its per-step error (``nn.heads`` module doc)."""

    kind: HeadKind = HeadKind.LINEAR
    loss: Loss | None = None  # None: the head's own (linear mse, sigmoid bce, softmax ce, identity mse)
    _name = "model.head"

    def _check(self) -> None:
        allowed = {HeadKind.LINEAR: (Loss.MSE, Loss.MAE), HeadKind.SIGMOID: (Loss.BCE,),
                   HeadKind.SOFTMAX: (Loss.CE,), HeadKind.IDENTITY: (Loss.MSE, Loss.MAE, Loss.BCE)}[self.kind]
        if self.loss is None:
            object.__setattr__(self, "loss", allowed[0])
        elif self.loss not in allowed:
            raise SpecError(f"{self._name}.loss: the {self.kind.value} head takes "
                            f"{' or '.join(a.value for a in allowed)}, got {self.loss.value}")


@dataclasses.dataclass(frozen=True)
class ModelSpec(Spec):
    """The whole autoencoder. ``features`` is F (V for token inputs)."""

    features: int
    embedding_dim: int = 32  # E
    encoder: EncoderSpec = EncoderSpec()
    decoder: DecoderSpec = DecoderSpec()
    head: HeadSpec = HeadSpec()
    cell: CellSpec = CellSpec()
    backend: Backend = Backend.AUTO
    dtype: DType = DType.FLOAT32
    pool: int = 1  # time pooling d (nn.pool): the encoder reads means of d steps, each output stands for d steps
    _name = "model"

    @property
    def can_pool(self) -> bool:
        """Whether time pooling (``pool`` > 1) applies: not to tokens, nor to decoders that fix T when built."""
        return self.encoder.vocab_size is None and not self.decoder.kind.fixes_t

    def _check(self) -> None:
        _positive("model.features", self.features)
        _positive("model.embedding_dim", self.embedding_dim)
        _positive("model.pool", self.pool)
        if self.pool > 1 and self.encoder.vocab_size is not None:
            raise SpecError("model.pool: tokens cannot be averaged over time; use pool 1 with a token encoder")
        if self.pool > 1 and self.decoder.kind.fixes_t:
            raise SpecError(f"model.pool: the {self.decoder.kind.value} decoder fixes T when built; use pool 1 with it, "
                            "or the repeat decoder")
        if self.decoder.kind is DecoderKind.LATENT_AS_SEQUENCE and self.embedding_dim % self.decoder.steps:
            t = self.decoder.steps
            raise SpecError(f"model.embedding_dim: the latent_as_sequence decoder reshapes z[E={self.embedding_dim}] "
                            f"into T={t} steps, so E must be a multiple of T; use E={t * max(1, round(self.embedding_dim / t))}")
        try:
            build(self)
        except SpecError:
            raise
        except ValueError as e:
            raise SpecError(f"model: {e}") from None

    @property
    def encoder_sizes(self) -> tuple[int, ...]:
        return (*self.encoder.hidden, self.embedding_dim)

    @property
    def decoder_sizes(self) -> tuple[int, ...]:
        hidden = self.decoder.hidden if self.decoder.hidden is not None else tuple(reversed(self.encoder.hidden))
        return (self.embedding_dim, *hidden)

    @classmethod
    def from_v1(cls, cfg: dict) -> "ModelSpec":
        """The ``model`` section of a version-1 config.json (``model_config``'s keys)."""
        known = {"features", "decoder", "embedding_dim", "hidden", "head", "steps", "bidirectional", "pooling",
                 "teacher_prob", "reverse_target", "unroll", "init", "activation", "recurrent_activation"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise SpecError(f"model.{unknown[0]}: unknown field of a version-1 model; known: {', '.join(sorted(known))}")
        head = {"linear": HeadSpec(), "mae": HeadSpec(HeadKind.LINEAR, Loss.MAE),
                "sigmoid": HeadSpec(HeadKind.SIGMOID)}.get(cfg.get("head", "linear"))
        if head is None:
            raise SpecError(f"model.head: unknown head {cfg.get('head')!r}; choose one of linear, mae, sigmoid")
        kind = cfg.get("decoder", "repeat")
        steps = cfg.get("steps") if kind == "latent_as_sequence" else None
        return cls(
            features=cfg["features"], embedding_dim=cfg.get("embedding_dim", 16),
            encoder=EncoderSpec(hidden=tuple(cfg.get("hidden", (32,))), bidirectional=cfg.get("bidirectional", False),
                                pooling=cfg.get("pooling", "last")),
            decoder=DecoderSpec(kind=kind, steps=steps, teacher_prob=cfg.get("teacher_prob", 0.0),
                                reverse_target=cfg.get("reverse_target")),
            head=head,
            cell=CellSpec(init=cfg.get("init", "uniform"), activation=cfg.get("activation", "tanh"),
                          recurrent_activation=cfg.get("recurrent_activation", "sigmoid"), unroll=cfg.get("unroll", 1)),
        )


# ----------------------------------------------------------------- build
@functools.lru_cache(maxsize=128)
def build(spec: ModelSpec) -> Autoencoder:
    """The runnable model for ``spec`` (memoised: equal specs, the same model)."""
    c, e = spec.cell, spec.embedding_dim
    kw = dict(init=c.init.value, unroll=c.unroll, backend=spec.backend.value, remat=c.remat,
              activation=c.activation.value, recurrent_activation=c.recurrent_activation.value)
    enc = spec.encoder
    wide = enc.bidirectional or enc.pooling is Pooling.LAST_MEAN  # the readout is wider than E
    project = wide if enc.project is None else enc.project
    encoder = lstm_encoder(spec.encoder_sizes, bidirectional=enc.bidirectional, pooling=enc.pooling.value,
                           latent_dim=e if project else None, vocab_size=enc.vocab_size, token_dim=enc.token_dim,
                           dropout=enc.dropout, **kw)
    d, sizes = spec.decoder, spec.decoder_sizes
    match d.kind:
        case DecoderKind.REPEAT:
            decoder = repeat(sizes, **kw)
        case DecoderKind.LATENT_AS_SEQUENCE:
            decoder = latent_as_sequence(sizes, steps=d.steps, **kw)
        case DecoderKind.UNCONDITIONED:
            decoder = unconditioned(sizes, state_init=d.state_init.value, **kw)
        case DecoderKind.TEACHER_FORCED:
            decoder = teacher_forced(sizes, reverse_target=d.reverse_target is not False,
                                     state_init=d.state_init.value, first_output=d.first_output.value, **kw)
        case DecoderKind.CONDITIONAL:
            decoder = conditional(sizes, teacher_prob=d.teacher_prob, reverse_target=bool(d.reverse_target),
                                  state_init=d.state_init.value, **kw)
        case DecoderKind.FINAL_STATE:
            kw.pop("remat")
            decoder = final_state(sizes, steps=d.steps, latent_steps=d.latent_steps, **kw)
    h = spec.head
    match h.kind:
        case HeadKind.LINEAR:
            head = linear(h.loss.value)
        case HeadKind.SIGMOID:
            head = sigmoid()
        case HeadKind.SOFTMAX:
            head = softmax(spec.features)
        case HeadKind.IDENTITY:
            head = identity(h.loss.value)
    features = None if enc.vocab_size is not None else spec.features
    if enc.vocab_size is not None and enc.vocab_size != spec.features:
        raise SpecError(f"model.features: a token encoder reads V={enc.vocab_size} tokens, so features must be "
                        f"{enc.vocab_size}, got {spec.features}")
    return make_autoencoder(encoder, decoder, head, features=features)._replace(spec=spec, pool=spec.pool)
