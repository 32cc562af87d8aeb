"""K models in one program equal K models trained one by one (train.many)."""

import json

import jax
import numpy as np
import pytest

from jax_lstm_ae.data import Dataset
from jax_lstm_ae.nn.spec import ModelSpec, SpecError
from jax_lstm_ae.train import OptimizerSpec, TrainSpec, run_training
from jax_lstm_ae.train.many import (encode_many, load_many, resolve_strategy, run_training_many,
                                    step_errors_many)

TOL = 1e-5
MODEL = ModelSpec(features=2, embedding_dim=6)


def _data(seed=0, n=40, t=12):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, t + 1, n).astype(np.int32)
    x = np.cumsum(rng.standard_normal((n, t, 2)), axis=1).astype(np.float32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    return Dataset(x, lengths)


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _assert_each_equals_one_by_one(result, specs, datas):
    for k, (spec, data) in enumerate(zip(specs, datas)):
        one = run_training(MODEL, spec, data)
        assert _max_diff(result.pick(k), one.params) < TOL, k
        assert len(result.histories[k]) == len(one.history), k
        for a, b in zip(result.histories[k], one.history):
            assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
            assert abs(a["loss"] - b["loss"]) < TOL and abs(a["val_loss"] - b["val_loss"]) < TOL
        assert result.normalizers[k].to_dict() == one.normalizer.to_dict()


# seeds, learning rates, weight decay, clipping on and off, all in one program
SWEEP = [TrainSpec(batch_size=8, epochs=3, seed=s, optimizer=OptimizerSpec(learning_rate=lr, weight_decay=wd,
                                                                          clip_norm=c))
         for s, lr, wd, c in [(0, 1e-2, 0.0, 1.0), (1, 3e-3, 1e-3, 0.0), (2, 2e-2, 0.0, 0.5)]]


@pytest.mark.parametrize("strategy", ["vmap", "map", "loop"])
def test_each_model_equals_its_own_run(strategy):
    data = _data()
    result = run_training_many(MODEL, SWEEP, data, strategy=strategy)
    assert result.strategy == strategy and result.k == 3
    _assert_each_equals_one_by_one(result, SWEEP, [data] * 3)
    losses = [min(h["val_loss"] for h in hist) for hist in result.histories]
    assert result.best == int(np.argmin(losses)) and result.errors == [None] * 3


def test_one_model_per_series_with_noise_schedule_and_early_stopping():
    datas = [_data(seed) for seed in (3, 4, 5)]
    specs = [TrainSpec(batch_size=8, epochs=4, seed=s, input_noise=noise, patience=p,
                       optimizer=OptimizerSpec(learning_rate=lr, schedule="cosine", warmup_steps=3))
             for s, noise, p, lr in [(0, 0.1, None, 1e-2), (0, 0.3, 1, 5e-2), (7, 0.0, 2, 1e-3)]]
    result = run_training_many(MODEL, specs, datas)  # auto
    _assert_each_equals_one_by_one(result, specs, datas)  # the clean model (noise 0) too, beside two noisy ones


def test_early_stopping_counts_only_after_the_floor_of_steps_as_one_run_does():
    data = _data(6)
    specs = [TrainSpec(batch_size=8, epochs=8, min_steps=24, patience=1, seed=s,
                       optimizer=OptimizerSpec(learning_rate=lr)) for s, lr in [(0, 2e-1), (1, 1e-1)]]
    result = run_training_many(MODEL, specs, data)
    _assert_each_equals_one_by_one(result, specs, [data] * 2)
    # the check has teeth: some model had an epoch without improvement inside the floor and trained past it
    floor_epochs = 24 // 4  # 32 training rows, batch 8
    early = [h for h in result.histories if any(
        r["val_loss"] >= min(q["val_loss"] for q in h[:i]) for i, r in enumerate(h[:floor_epochs]) if i)]
    assert early and all(len(h) > floor_epochs - 1 for h in early)


def test_refuses_specs_that_do_not_share_the_schedule():
    with pytest.raises(SpecError, match=r"train_specs\[1\]\.batch_size: 16 differs"):
        run_training_many(MODEL, [TrainSpec(batch_size=8), TrainSpec(batch_size=16)], _data())
    with pytest.raises(SpecError, match=r"train_specs\[1\]\.optimizer\.schedule"):
        run_training_many(MODEL, [TrainSpec(), TrainSpec(optimizer=OptimizerSpec(schedule="cosine"))], _data())
    with pytest.raises(SpecError, match=r"train_specs\[2\]\.input_noise: the corruption is dropout"):
        run_training_many(MODEL, [TrainSpec(), TrainSpec(input_noise=0.1), TrainSpec(step_dropout=0.1)], _data())
    with pytest.raises(SpecError, match=r"data: the 2 datasets have shapes"):
        run_training_many(MODEL, [TrainSpec(), TrainSpec()], [_data(), _data(t=10)])
    with pytest.raises(SpecError, match="strategy: 'pmap' is not one of"):
        run_training_many(MODEL, [TrainSpec()], _data(), strategy="pmap")


def test_auto_strategy():
    assert resolve_strategy("auto", "cpu") == "map"
    assert resolve_strategy("auto", "gpu") == resolve_strategy("auto", "tpu") == "vmap"
    assert resolve_strategy("loop", "gpu") == "loop"


def test_run_folder_encode_and_scores(tmp_path):
    data = _data()
    specs = [TrainSpec(batch_size=8, epochs=2, seed=s) for s in range(3)]
    result = run_training_many(MODEL, specs, data, workdir=tmp_path / "run", strategy="map")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["kind"] == "many" and config["chosen"] == result.best and len(config["train"]) == 3
    assert config["model"] == MODEL.to_dict() and config["runtime"]["strategy"] == "map"
    run = load_many(tmp_path / "run")
    assert run.chosen == result.best and _max_diff(run.params, result.params) == 0.0
    assert _max_diff(run.state, result.state) == 0.0
    x, lengths = data.x[:5], data.lengths[:5]
    z = encode_many(result.model, result.params, x, lengths)
    assert z.shape == (3, 5, 6)
    for k in range(3):
        assert _max_diff(z[k], result.model.encode(result.pick(k), x, lengths)) < 1e-6
    errs = step_errors_many(result.model, result.params, np.stack([x] * 3), lengths)
    assert errs.shape == (3, 5, 12) and float(errs[:, 0, lengths[0]:].sum()) == 0.0
    z_raw = result.encode(x, lengths)  # through each model's normaliser
    want = result.model.encode(result.pick(1), result.normalizers[1].apply(data.take(np.arange(5))).x, lengths)
    assert _max_diff(z_raw[1], want) < 1e-5


_DEVICES = r"""
import jax
jax.config.update("jax_num_cpu_devices", 2)
import numpy as np
from jax.sharding import Mesh
from jax_lstm_ae.data import Dataset
from jax_lstm_ae.nn.spec import ModelSpec
from jax_lstm_ae.train import TrainSpec, run_training_many
rng = np.random.default_rng(0)
data = Dataset(rng.standard_normal((24, 10, 2)).astype(np.float32), np.full(24, 10, np.int32))
model, specs = ModelSpec(features=2, embedding_dim=4), [TrainSpec(batch_size=8, epochs=2, seed=s) for s in range(4)]
mesh = Mesh(np.array(jax.devices()), ("data",))
split = run_training_many(model, specs, data, strategy="map", mesh=mesh)
plain = run_training_many(model, specs, data, strategy="loop")
diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(split.params), jax.tree.leaves(plain.params)))
print(split.config["runtime"]["devices"], diff)
"""


def test_models_split_over_cpu_devices():
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _DEVICES], env=env, capture_output=True, text=True, check=True)
    devices, diff = out.stdout.split()
    assert devices == "2" and float(diff) < TOL


def test_resume_of_a_many_run_equals_the_uninterrupted_run(tmp_path):
    """Stopped after epoch 2 (a kill), resumed to 4: the same bits as 4 epochs at once, for each of K models."""
    from jax_lstm_ae.train.checkpoint import RunError, load_run
    from jax_lstm_ae.train.many import resume_training_many

    data = _data()
    specs = [TrainSpec(batch_size=8, epochs=4, seed=s, patience=p,
                       optimizer=OptimizerSpec(learning_rate=lr, schedule="cosine"))
             for s, lr, p in [(0, 1e-2, None), (1, 3e-3, 1), (2, 2e-2, None)]]
    whole = run_training_many(MODEL, specs, data, workdir=tmp_path / "whole")

    class Kill(Exception):
        pass

    def kill_after_2(prog):
        if prog.epoch == 2:
            raise Kill()

    with pytest.raises(Kill):
        run_training_many(MODEL, specs, data, workdir=tmp_path / "cut", callback=kill_after_2)
    assert load_many(tmp_path / "cut").extra["epoch"] == 2
    resumed = resume_training_many(tmp_path / "cut", data)
    assert _max_diff(resumed.params, whole.params) == 0.0 and _max_diff(resumed.state, whole.state) == 0.0
    assert resumed.best == whole.best
    for a, b in zip(resumed.histories, whole.histories):
        assert [(r["epoch"], r["loss"], r["val_loss"]) for r in a] == [(r["epoch"], r["loss"], r["val_loss"]) for r in b]
    lines = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["model"], r["epoch"]) for r in lines) == sorted(
        (k, r["epoch"]) for k, h in enumerate(whole.histories) for r in h)
    a, b = load_many(tmp_path / "cut"), load_many(tmp_path / "whole")
    assert a.chosen == b.chosen == whole.best and _max_diff(a.params, b.params) == 0.0
    one = a.pick()  # the chosen model alone, as a one-model run
    assert _max_diff(one.params, whole.pick()) == 0.0 and one.normalizer.to_dict() == whole.normalizers[whole.best].to_dict()
    more = resume_training_many(tmp_path / "cut", data, changes={"epochs": 5})  # extend every model
    # a model that early stopping ended stays ended (its patience did not grow)
    assert [h[-1]["epoch"] for h in more.histories] == [5 if h[-1]["epoch"] == 4 else h[-1]["epoch"]
                                                          for h in whole.histories]
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["resumed"] == [{"at_epoch": 4, "epochs": 5}]
    with pytest.raises(RunError, match="data differs"):
        resume_training_many(tmp_path / "cut", _data(seed=9), changes={"epochs": 6})
    with pytest.raises(RunError, match="load_many"):
        load_run(tmp_path / "cut")
