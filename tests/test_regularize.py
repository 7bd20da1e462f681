"""Training techniques for the recipes: locked (variational) and embedding dropout, the cosine schedule.

- masks: shapes, the locked mask equal at every step, the drop rate, the random stream of plain
  dropout unchanged (so runs saved by earlier versions resume the same);
- gradients: directional checks of the float64 model with embedding and locked masks, against central
  differences of its own loss (the same method as test_model.py);
- CLI: the cosine learning rate follows its formula in the training log, before and after a resume;
  options that contradict each other are one-line errors.
"""
import json
import math
import zlib

import numpy as np
import pytest

import reference as ref
from charlm import model
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import CharlmError
from support import invoke, ok, one_line_error, shakespeare

T, B = 6, 5


def cfg_for(**kw):
    return ModelConfig(layers=2, hidden=4, embed=3, vocab_size=7, **kw)


def test_locked_masks_are_one_per_window_and_embedding_masks_per_step():
    cfg = cfg_for()
    masks = model.dropout_masks(cfg, np.random.default_rng(0), T, B, 0.5, np.float64, embed_p=0.25, locked=True)
    assert [m.shape for m in masks] == [(1, B, 3), (1, B, 4), (1, B, 4)]
    free = model.dropout_masks(cfg, np.random.default_rng(0), T, B, 0.5, np.float64, embed_p=0.25)
    assert [m.shape for m in free] == [(T, B, 3), (T, B, 4), (T, B, 4)]
    assert set(np.unique(masks[1])) == {0.0, 2.0} and set(np.unique(masks[0])) == {0.0, 1 / 0.75}
    big = model.dropout_masks(cfg, np.random.default_rng(1), 200, 50, 0.3, np.float64, embed_p=0.1)
    assert abs((big[1] == 0).mean() - 0.3) < 0.01 and abs((big[0] == 0).mean() - 0.1) < 0.01
    assert model.dropout_masks(cfg, np.random.default_rng(0), T, B, 0.0) is None
    only_embed = model.dropout_masks(cfg, np.random.default_rng(0), T, B, 0.0, embed_p=0.2)
    assert only_embed[0] is not None and only_embed[1:] == [None, None]


def test_plain_dropout_draws_what_it_always_drew():
    """Without the new options the generator is used exactly as before (old runs resume the same)."""
    cfg = cfg_for()
    masks = model.dropout_masks(cfg, np.random.default_rng(5), T, B, 0.2)
    rng = np.random.default_rng(5)
    want = [((rng.random((T, B, 4), dtype=np.float32) < 0.8) / 0.8).astype(np.float32) for _ in range(2)]
    assert masks[0] is None and all(np.array_equal(m, w) for m, w in zip(masks[1:], want))


def loss_of(cfg, x, y, masks):
    return lambda P: model.loss_and_grads(cfg, P, x, y, None, masks)[0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("locked", [False, True], ids=["per-step", "locked"])
def test_gradients_with_embedding_and_locked_dropout(cell, locked):
    cfg = cfg_for(cell=cell)
    rng = np.random.default_rng(zlib.crc32(f"{cell}-{locked}".encode()))
    P = ref.random_params(cfg, rng)
    x = rng.integers(0, 7, (T, B))
    y = rng.integers(0, 7, (T, B))
    masks = model.dropout_masks(cfg, np.random.default_rng(9), T, B, 0.4, np.float64, embed_p=0.4, locked=locked)
    f = loss_of(cfg, x, y, masks)
    loss, grads, _ = model.loss_and_grads(cfg, P, x, y, None, masks)
    assert abs(loss - loss_of(cfg, x, y, None)(P)) > 1e-6          # the masks matter
    eps = 1e-5
    for name, g in grads.items():
        for _ in range(3):
            d = rng.standard_normal(g.shape)
            plus = {k: v + eps * d if k == name else v for k, v in P.items()}
            minus = {k: v - eps * d if k == name else v for k, v in P.items()}
            numeric = (f(plus) - f(minus)) / (2 * eps)
            analytic = float(np.sum(g * d))
            assert abs(numeric - analytic) <= 1e-6 * max(1e-3, abs(numeric)), (name, numeric, analytic)


# ----------------------------------------------------------------------------------------------- CLI

RUN = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "8", "--threads", "1", "-q",
       "--valid-every", "10", "--lr", "0.01", "--lr-schedule", "cosine", "--locked-dropout", "--dropout", "0.2",
       "--embed-dropout", "0.1"]


def log_lrs(out):
    lines = [json.loads(line) for line in open(str(out).replace(".safetensors", ".log.jsonl"), encoding="utf-8")]
    return {r["step"]: r["lr"] for r in lines if "lr" in r and "step" in r}


def test_cosine_learning_rate_follows_the_formula_across_a_resume(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(shakespeare(4000), encoding="utf-8")
    out = tmp_path / "m.safetensors"
    ok(invoke("train", corpus, "-o", out, *RUN, "--max-steps", 40))
    ok(invoke("train", corpus, "-o", out, "--resume", "--max-steps", 60))
    lrs = log_lrs(out)
    assert {10, 20, 40, 50, 60} <= set(lrs)
    for s in (10, 20, 40):                                   # the first session: 40 steps
        assert lrs[s] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 40)), rel=1e-9)
    for s in (50, 60):                                       # resumed with a new limit: 60 steps
        assert lrs[s] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 60)), rel=1e-9)


def test_cosine_and_plateau_decay_together_are_refused(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(shakespeare(4000), encoding="utf-8")
    r = invoke("train", corpus, "-o", tmp_path / "m.safetensors", *RUN, "--max-steps", 5, "--lr-decay", "2")
    one_line_error(r, "--lr-schedule cosine", "--lr-decay")
    with pytest.raises(CharlmError, match="lr_schedule cosine sets the learning rate itself: drop lr_decay"):
        TrainConfig(lr_schedule="cosine", lr_decay=2.0)          # the library names its fields, not flags
    r = invoke("train", corpus, "-o", tmp_path / "m.safetensors", "--embed-dropout", "1.0", "--max-steps", 5)
    one_line_error(r, "'--embed-dropout': 1.0 is not in the range 0<=x<1")
