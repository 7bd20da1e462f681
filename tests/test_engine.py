"""The training engine with a task that is not a language model: exact resume, best kept by a metric where
higher is better, batches that are independent (nothing carried), and the task's own files.

TinyTask is a softmax regression on fixed random points: each epoch visits the points in an order drawn
from (seed, epoch) alone, so a run resumes at (epoch, batch index) without saving the order; input
dropout draws its masks from the engine's generator, so a resumed run must restore that generator too.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pytest
import safetensors.numpy

from charlm import engine, tasks
from charlm.checkpoint import write_atomic
from charlm.config import RunConfig
from charlm.errors import CharlmError, ModelFileError
from charlm.resume import load_state, save_state, state_path


@dataclass(frozen=True)
class TinyConfig:
    inputs: int = 5
    classes: int = 3

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def param_shapes(self):
        return {"w": (self.classes, self.inputs), "b": (self.classes,)}

    def tensor_count(self) -> int:
        return 2


def _points(seed, n, cfg):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, cfg.inputs)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)                  # 3 classes
    return X, y


class TinyTask:
    kind = "tiny-test"
    train_config_class = RunConfig
    select, higher_is_better, metrics, label = "valid_accuracy", True, ("valid_accuracy", "valid_loss"), "acc"

    def __init__(self, tc: RunConfig, cfg=TinyConfig()):
        self.config, self.tc, self.vocab = cfg, tc, ["a", "b", "c"]
        self.X, self.y = _points(1, 103, cfg)
        self.VX, self.vy = _points(2, 40, cfg)
        self.steps_per_epoch = math.ceil(len(self.y) / tc.batch_size)
        self.digests = {"train": "t" * 8, "valid": "v" * 8}

    def init_params(self, rng):
        return {"w": rng.normal(0, 0.1, self.config.param_shapes()["w"]).astype(np.float32),
                "b": np.zeros(self.config.classes, np.float32)}

    def carried(self):
        return {}

    def restore(self, tensors):
        assert tensors == {}

    def check_position(self, position):
        if position >= self.steps_per_epoch:
            raise CharlmError(f"position {position} is past the epoch")

    def _forward(self, P, X, y):
        z = X @ P["w"].T + P["b"]                                            # (n, C)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return p, float(-np.log(p[np.arange(len(y)), y]).mean())

    def step(self, P, epoch, position, rng):
        B = self.tc.batch_size
        order = np.random.default_rng([self.tc.seed, epoch]).permutation(len(self.y))
        idx = order[position * B:(position + 1) * B]
        keep = 1.0 - self.tc.dropout
        X = self.X[idx] * ((rng.random((len(idx), self.config.inputs)) < keep) / keep).astype(np.float32)
        p, loss = self._forward(P, X, self.y[idx])
        dz = p
        dz[np.arange(len(idx)), self.y[idx]] -= 1.0
        dz = (dz / len(idx)).astype(np.float32)
        return loss, {"w": dz.T @ X, "b": dz.sum(axis=0)}, len(idx), lambda: None

    def advance(self, position):
        return position + 1, position + 1 >= self.steps_per_epoch

    def new_epoch(self):
        pass

    def evaluate(self, P):
        p, loss = self._forward(P, self.VX, self.vy)
        return {"valid_accuracy": float((p.argmax(axis=1) == self.vy).mean()), "valid_loss": loss}

    def final_metrics(self, path):
        return self.evaluate(safetensors.numpy.load_file(str(path)))

    def save_model(self, path, P, meta):
        meta = dict(meta, format="charlm/1", task=self.kind, **self.model_metadata(self.config, self.vocab))
        write_atomic(path, safetensors.numpy.save(P, metadata=meta), what="model")

    @staticmethod
    def model_metadata(config, vocab):
        return {"config": config.to_json(), "vocab": json.dumps(vocab)}

    @staticmethod
    def read_model_metadata(path, meta):
        try:
            return TinyConfig(**json.loads(meta["config"])), json.loads(meta["vocab"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(path, f"bad tiny metadata: {e}") from None

    @staticmethod
    def carried_shapes(config, train_config):
        return {}

    @staticmethod
    def resume_fixed(st, values):
        return {}


tasks.register(TinyTask)
TC = RunConfig(batch_size=8, lr=0.05, dropout=0.3, valid_every=4, seed=5, max_steps=30, keep="best")


def _train(out, tc=TC, resume=None):
    return engine.run(TinyTask(tc), out, progress=False, log=lambda m: None, resume=resume, threads=1)


def _bits(d):
    return {k: np.asarray(v).tobytes() for k, v in d.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "ref.safetensors"
    return out, _train(out)


def test_a_task_trains_and_keeps_its_best_by_a_higher_is_better_metric(reference):
    out, res = reference
    accuracies = [r["valid_accuracy"] for r in res.history]
    assert res.steps == 30 and res.epochs == pytest.approx(30 / 13)
    assert res.best == max(accuracies) and res.history[accuracies.index(max(accuracies))]["step"] == res.best_step
    assert min(accuracies) < res.best and accuracies[-1] < res.best   # best is neither the lowest nor the last
    assert res.final["valid_accuracy"] == res.best               # the saved model is the best one
    st = load_state(state_path(out))
    assert st.task == "tiny-test" and st.config == TinyConfig() and st.tensors == {}
    assert st.progress["best"] == res.best and st.progress["epoch"] == 2 and st.progress["epoch_pos"] == 4
    with open(str(out).replace(".safetensors", ".log.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert [r["valid_accuracy"] for r in logged if r.get("valid_accuracy") is not None] == accuracies


@pytest.mark.parametrize("stop", [3, 13, 17])           # mid-epoch, at an epoch's end, after a validation
def test_resumed_run_is_bit_identical(reference, tmp_path, stop):
    ref_out, ref = reference
    out = tmp_path / "m.safetensors"
    _train(out, replace(TC, max_steps=stop))
    res = _train(out, resume=load_state(state_path(out)))
    assert res.resumed_from == stop and res.steps == 30
    mine, theirs = load_state(state_path(out)), load_state(state_path(ref_out))
    assert _bits(mine.params) == _bits(theirs.params) and _bits(mine.opt_arrays) == _bits(theirs.opt_arrays)
    assert mine.rng_state == theirs.rng_state
    assert (res.best, res.best_step) == (ref.best, ref.best_step)
    assert _bits(safetensors.numpy.load_file(str(out))) == _bits(safetensors.numpy.load_file(str(ref_out)))


@pytest.mark.parametrize("damage", ["rng", "position", "moment"])
def test_resume_negative_control(reference, tmp_path, damage):
    """Each part of the saved run matters: changing it before the resume ends with other bits."""
    ref_out, _ = reference
    out = tmp_path / "m.safetensors"
    _train(out, replace(TC, max_steps=13))
    st = load_state(state_path(out))
    if damage == "rng":
        rng = np.random.default_rng()
        rng.bit_generator.state = st.rng_state
        rng.random()
        st.rng_state = rng.bit_generator.state
    elif damage == "position":
        st.progress["epoch_pos"] = 1
    else:
        st.opt_arrays["m.w"].view(np.uint32)[0] += 1
    save_state(state_path(out), st)
    _train(out, resume=load_state(state_path(out)))
    assert _bits(load_state(state_path(out)).params) != _bits(load_state(state_path(ref_out)).params)


def test_resume_refuses_a_changed_fixed_option_and_another_task(reference, tmp_path):
    ref_out, _ = reference
    st = load_state(state_path(ref_out))
    with pytest.raises(CharlmError, match="--batch-size 4 conflicts"):
        engine.check_resume(st, TinyTask(replace(TC, batch_size=4)), "x")
    with pytest.raises(CharlmError, match="the model does not match.*classes 4"):
        engine.check_resume(st, TinyTask(TC, TinyConfig(classes=4)), "x")
    engine.check_resume(st, TinyTask(replace(TC, lr=0.5, max_steps=99)), "x")     # changeable, limits: fine
    st.task = "lm"
    with pytest.raises(CharlmError, match="holds a lm run, not a tiny-test run"):
        engine.check_resume(st, TinyTask(TC), "x")
