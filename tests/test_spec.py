"""The model and the training as values: strict dict forms that round-trip,
refusals that name the field, build memoised on the spec, version-1 configs,
and the one runner (resume to the same bits, other data refused)."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

import jax_lstm_ae as la
from jax_lstm_ae.nn.spec import (
    CellSpec, DecoderKind, DecoderSpec, EncoderSpec, HeadKind, HeadSpec, Loss, ModelSpec, Pooling, SpecError, build,
)  # fmt: skip
from jax_lstm_ae.train import runner
from jax_lstm_ae.train.checkpoint import load_run, model_config
from jax_lstm_ae.train.spec import OptimizerSpec, TrainSpec, preset

SPECS = [
    ModelSpec(features=3),
    ModelSpec(features=3, embedding_dim=8, encoder=EncoderSpec(hidden=(12,), bidirectional=True, pooling="mean"),
              decoder=DecoderSpec("teacher_forced", first_output="state", state_init="project"),
              cell=CellSpec(init="uniform", activation="relu", unroll=2)),
    ModelSpec(features=3, embedding_dim=4, decoder=DecoderSpec("latent_as_sequence", steps=2)),
    ModelSpec(features=3, embedding_dim=6, decoder=DecoderSpec("conditional", teacher_prob=0.5, reverse_target=True)),
    ModelSpec(features=4, embedding_dim=6, decoder=DecoderSpec("unconditioned", hidden=(4,)),
              head=HeadSpec("identity", "bce")),
    ModelSpec(features=2, embedding_dim=20, decoder=DecoderSpec("final_state", steps=5, latent_steps=10, hidden=(10,))),
    ModelSpec(features=5, embedding_dim=4, encoder=EncoderSpec(vocab_size=5, token_dim=3), head=HeadSpec("softmax")),
    ModelSpec(features=3, backend="reference", head=HeadSpec("sigmoid")),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.decoder.kind.value + "-" + s.head.kind.value)
def test_dict_form_round_trips_exactly_through_json(spec):
    d = json.loads(json.dumps(spec.to_dict()))
    again = ModelSpec.from_dict(d)
    assert again == spec and hash(again) == hash(spec) and again.to_dict() == d
    assert build(again) is build(spec)  # memoised on the value: one model, one compilation
    assert build(spec).spec == spec


def test_unknown_and_ill_typed_fields_are_refused_by_name():
    base = ModelSpec(features=3).to_dict()
    cases = [
        ({**base, "hiden": [3]}, r"model\.hiden: unknown field"),
        ({**base, "encoder": {**base["encoder"], "poolng": "mean"}}, r"model\.encoder\.poolng: unknown field"),
        ({**base, "features": "3"}, r"model\.features: expected an integer"),
        ({**base, "features": True}, r"model\.features: expected an integer"),
        ({**base, "embedding_dim": 0}, r"model\.embedding_dim: must be >= 1"),
        ({**base, "encoder": {**base["encoder"], "pooling": "max"}}, r"model\.encoder\.pooling: 'max' is not one of"),
        ({**base, "encoder": {**base["encoder"], "hidden": [4, "x"]}}, r"model\.encoder\.hidden\[1\]"),
        ({**base, "decoder": {**base["decoder"], "kind": "transformer"}}, r"model\.decoder\.kind"),
        ({**base, "decoder": {**base["decoder"], "teacher_prob": 0.3}}, r"model\.decoder\.teacher_prob: only the "),
        ({**base, "head": {"kind": "sigmoid", "loss": "mae"}}, r"model\.head\.loss: the sigmoid head takes bce"),
        ({**base, "backend": "gpu"}, r"model\.backend: 'gpu' is not one of auto"),
        ({**base, "cell": {**base["cell"], "activation": "gelu"}}, r"model\.cell\.activation"),
    ]
    for d, match in cases:
        with pytest.raises(SpecError, match=match):
            ModelSpec.from_dict(d)


def test_swap_a_strategy_with_dataclasses_replace():
    spec = ModelSpec(features=3, embedding_dim=4, encoder=EncoderSpec(hidden=(6,)))
    swapped = dataclasses.replace(spec, decoder=DecoderSpec(DecoderKind.TEACHER_FORCED))
    assert build(swapped).decoder.name == "teacher_forced" and build(swapped).decoder.reverse_target
    assert build(swapped).encoder is not build(spec).encoder and spec.decoder.kind is DecoderKind.REPEAT
    with pytest.raises(SpecError, match="latent_as_sequence decoder fixes T"):
        dataclasses.replace(spec, decoder=DecoderSpec("latent_as_sequence"))
    assert Pooling.MEAN == "mean" and HeadSpec().loss is Loss.MSE and HeadSpec(HeadKind.SOFTMAX).loss is Loss.CE


def test_version_1_model_sections_build_the_same_model():
    """Runs written with config version 1 still load: the same parameter tree and values."""
    v1 = {"features": 3, "decoder": "teacher_forced", "embedding_dim": 4, "hidden": [6], "head": "mae",
          "steps": 7, "bidirectional": True, "pooling": "last_mean", "teacher_prob": 0.0, "reverse_target": None,
          "unroll": 1, "init": "uniform", "activation": "tanh", "recurrent_activation": "sigmoid"}
    spec = ModelSpec.from_v1(v1)
    assert spec.decoder.steps is None and spec.head == HeadSpec("linear", "mae")
    old = la.make_autoencoder(
        la.lstm_encoder((6, 4), bidirectional=True, pooling="last_mean", latent_dim=4),
        la.teacher_forced((4, 6), reverse_target=True), la.linear("mae"), features=3)
    a, b = build(spec).init(jax.random.PRNGKey(0)), old.init(jax.random.PRNGKey(0))
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)
    assert model_config(3, **{k: v for k, v in v1.items() if k != "features"}) == spec.to_dict()
    with pytest.raises(SpecError, match="model.hiden: unknown field of a version-1 model"):
        ModelSpec.from_v1({"features": 3, "hiden": [2]})


def test_train_spec_checks_and_budget():
    t = TrainSpec()
    assert TrainSpec.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert t.budget(100) == (32, 3, 334)  # 20 epochs, at least 1,000 steps
    assert TrainSpec(epochs=5).budget(100) == (32, 3, 5) and TrainSpec(epochs=1, min_steps=10).budget(7) == (7, 1, 10)
    for bad, match in [({"batch_size": 0}, r"train\.batch_size"), ({"val_fraction": 1.0}, r"train\.val_fraction"),
                       ({"input_noise": 0.1, "step_dropout": 0.1}, r"train\.step_dropout"),
                       ({"optimizer": {"learning_rate": 0}}, r"train\.optimizer\.learning_rate"),
                       ({"optimizer": {"warmup_steps": 10**12}}, r"train\.optimizer\.warmup_steps"),
                       ({"schedule": "cosine"}, r"train\.schedule: unknown field")]:
        with pytest.raises(SpecError, match=match):
            TrainSpec.from_dict(bad)
    m, tr = preset("series", 2)
    assert m.embedding_dim == 16 and m.encoder.hidden == (32,) and tr.optimizer.schedule == "cosine"
    # the CLI's: the mean readout, E = 64; at least 2,000 steps, up to 100 epochs, early stopping after 10 bad epochs
    assert preset("cli", 2) == (ModelSpec(features=2, embedding_dim=64, encoder=EncoderSpec(pooling="mean")),
                                TrainSpec(epochs=100, min_steps=2000, patience=10))
    assert preset("cli", 2)[1].budget(400) == (32, 12, 167)  # 500 x T at val_fraction 0.2: 2,000 steps
    assert preset("cli", 2)[1].budget(4000) == (32, 125, 100) and preset("cli", 2)[1].floor_steps == 2000
    with pytest.raises(SpecError, match="unknown preset"):
        preset("fast", 2)


def _data(n=24, t=9, f=2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sin(np.linspace(0, 6, t))[None, :, None] * rng.normal(1, 0.3, (n, 1, f)) + rng.normal(0, 0.1, (n, t, f))
    return la.Dataset(x.astype(np.float32), np.full((n,), t, np.int32))


SMALL = ModelSpec(features=2, embedding_dim=4, backend="reference")
SMALL_TRAIN = TrainSpec(batch_size=8, epochs=4, optimizer=OptimizerSpec(schedule="cosine"))


def test_runner_resume_reaches_the_same_bits(tmp_path):
    data = _data()
    whole = runner.run_training(SMALL, SMALL_TRAIN, data, workdir=tmp_path / "a")
    runner.run_training(SMALL, SMALL_TRAIN, data, workdir=tmp_path / "b", max_steps=5)  # stopped mid-epoch 3
    resumed = runner.resume_training(tmp_path / "b", data)
    for u, v in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["version"] == 2 and cfg["model"] == SMALL.to_dict() and cfg["train"] == SMALL_TRAIN.to_dict()
    assert cfg["runtime"]["backend"] == "reference" and cfg["budget"]["epochs"] == 4
    assert len((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()) == 4
    run = load_run(tmp_path / "a")
    assert run.model is whole.model  # the same spec, the same model object
    for u, v in zip(jax.tree.leaves(run.params), jax.tree.leaves(whole.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # more epochs: honoured and recorded; other fields and other data refused
    longer = runner.resume_training(tmp_path / "a", data, changes={"epochs": 5})
    assert int(longer.state.step) == 5 * 2 and longer.config["resumed"] == [{"at_epoch": 4, "epochs": 5}]
    with pytest.raises(SpecError, match="train.seed: cannot change when resuming"):
        runner.resume_training(tmp_path / "a", data, changes={"seed": 1})
    with pytest.raises(la.train.RunError, match="the data differs"):
        runner.resume_training(tmp_path / "a", _data(seed=1), changes={"epochs": 6})


def test_auto_backend_is_saved_as_asked_and_resolved_when_the_run_starts(tmp_path):
    spec = dataclasses.replace(SMALL, backend="auto")
    res = runner.run_training(spec, dataclasses.replace(SMALL_TRAIN, epochs=1), _data(), workdir=tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"]["backend"] == "auto" and cfg["runtime"]["backend"] == "fast"  # the CPU's
    assert res.model.spec.backend == "auto"


def test_runner_is_the_research_path_with_its_settings_written_down():
    """A caller-chosen validation set, no normalisation: the runner's state is
    exactly fit() on the same model, optimiser, budget and seed."""
    from jax_lstm_ae.train.fit import fit
    from jax_lstm_ae.train.step import make_optimizer

    data, val = _data(), _data(n=8, seed=3)
    spec = dataclasses.replace(SMALL_TRAIN, normalize="none")
    res = runner.run_training(SMALL, spec, data, val=val)
    by_hand, _ = fit(build(SMALL), make_optimizer(1e-2, clip_norm=1.0, decay_steps=4 * 3), data, val, epochs=4,
                     batch_size=8, seed=0, progress=False, restore_best=False)
    for u, v in zip(jax.tree.leaves(res.state), jax.tree.leaves(by_hand), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert res.val.n == 8 and res.config["data"]["val_fingerprint"]["n"] == 8


def test_unprojected_wide_readout():
    spec = ModelSpec(features=2, embedding_dim=4, encoder=EncoderSpec(pooling="last_mean", project=False))
    model = build(spec)
    assert model.latent_dim == 8 and "proj" not in model.init(jax.random.PRNGKey(0))["encoder"]
    assert build(dataclasses.replace(spec, encoder=EncoderSpec(pooling="last_mean"))).latent_dim == 4


def test_resume_on_changed_data_only_when_allowed(tmp_path, capsys):
    from jax_lstm_ae.cli.main import main as cli

    x = _data(n=20).x
    np.save(tmp_path / "x.npy", x)
    argv = ["train", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r"), "--epochs", "1",
            "--embedding-dim", "3", "--devices", "1", "--quiet"]
    assert cli(argv) == 0
    np.save(tmp_path / "x.npy", x * 2)  # the file changed since the run started
    resume = ["train", "--out", str(tmp_path / "r"), "--resume", "--epochs", "2", "--devices", "1", "--quiet"]
    capsys.readouterr()
    assert cli(resume) == 2 and "the data differs" in capsys.readouterr().err
    assert cli([*resume, "--allow-other-data"]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["resumed"][0]["at_epoch"] == 1 and cfg["resumed"][0]["fingerprint"]["n"] == 20
    assert cfg["data"]["fingerprint"] == cfg["resumed"][0]["fingerprint"]


def test_a_run_refuses_data_its_model_cannot_take(tmp_path, capsys):
    """The checks read the run's spec: a sigmoid head refuses values outside [0, 1], a decoder that fixes
    T refuses other lengths (both were silently skipped for version-2 configs)."""
    from jax_lstm_ae.cli.main import main as cli

    binary = (np.random.default_rng(0).random((24, 6, 2)) > 0.5).astype(np.float32)
    np.save(tmp_path / "b.npy", binary)
    np.save(tmp_path / "real.npy", binary * 3.0)
    np.save(tmp_path / "short.npy", binary[:, :4])
    common = ["--epochs", "1", "--embedding-dim", "6", "--devices", "1", "--quiet"]
    assert cli(["train", "--data", str(tmp_path / "b.npy"), "--out", str(tmp_path / "s"), *common]) == 0
    assert cli(["encode", "--run", str(tmp_path / "s"), "--data", str(tmp_path / "real.npy"),
                "--out", str(tmp_path / "z.npy")]) == 2
    assert "outside [0, 1] but the model has a sigmoid head" in capsys.readouterr().err
    assert cli(["train", "--data", str(tmp_path / "b.npy"), "--out", str(tmp_path / "l"), "--head", "linear",
                "--decoder", "latent_as_sequence", *common]) == 0
    assert cli(["encode", "--run", str(tmp_path / "l"), "--data", str(tmp_path / "short.npy"),
                "--out", str(tmp_path / "z.npy")]) == 2
    assert "latent_as_sequence decoder needs T=6" in capsys.readouterr().err
