"""The end of a language-model run: the time budget covers it, and `charlm info` gives the summary's figure."""
import json
import time

import pytest

from charlm import evaluate
from charlm.config import ModelConfig, TrainConfig
from charlm.train import load_corpus, train

from support import invoke, ok, play


@pytest.mark.parametrize("keep_room, valid_every", [(True, 20), (True, 10**6), (False, 20)])
def test_time_budget_covers_the_final_figure_on_a_slow_machine(tmp_path, monkeypatch, keep_room, valid_every):
    """The exact single-stream validation after the loop is made slow (as on a busy machine); the run still
    ends within its budget, also when no validation is scheduled before its end (valid_every 10**6 steps).
    Negative control: without the room kept for it, the run overruns."""
    real = evaluate.stream_nll

    def slow(cfg, P, ids, progress=None):           # 0.6 ms a token: about 5 s for the whole validation text
        time.sleep(6e-4 * len(ids))
        return real(cfg, P, ids, progress)
    monkeypatch.setattr(evaluate, "stream_nll", slow)
    if not keep_room:
        from charlm.tasks.lm import LMTask
        monkeypatch.setattr(LMTask, "final_seconds", lambda self, P: 0.0)
    corpus = tmp_path / "c.txt"
    corpus.write_text(play(90000), encoding="utf-8")
    data = load_corpus([corpus], valid_fraction=0.09)
    assert len(data.valid) > 7000
    cfg = ModelConfig(hidden=8, embed=8, layers=1, vocab_size=len(data.vocab))
    tc = TrainConfig(batch_size=4, seq_len=8, time_budget=6, valid_every=valid_every)
    began = time.perf_counter()
    res = train(data, tmp_path / "m.safetensors", cfg, tc, progress=False, log=lambda m: None, threads=1)
    wall = time.perf_counter() - began
    assert res.stopped_by == "time-budget"
    if keep_room:
        assert wall <= 6 + 2.0, (wall, res.seconds, res.steps)   # setup before the clock starts: < 2 s
    else:
        assert wall > 6 + 4.0, wall


def test_info_gives_the_summary_validation_figure(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(play(20000), encoding="utf-8")
    out = tmp_path / "m.safetensors"
    summary = json.loads(ok(invoke("train", corpus, "--hidden", 8, "--layers", 1, "--batch-size", 4, "--seq-len", 8,
                                   "--max-steps", 30, "--valid-every", 10, "--threads", 1, "-q", "--json", "-o", out))
                         .stdout.splitlines()[-1])
    info = json.loads(ok(invoke("info", "-m", out, "--json")).stdout)
    assert float(info["meta"]["valid_loss"]) == summary["valid_loss"] != summary["best_valid_loss"]
    assert float(info["meta"]["valid_bpc"]) == summary["valid_bpc"]
    text = ok(invoke("info", "-m", out)).stdout
    assert f"validation of this model (as the training summary gives it): {summary['valid_loss']:.4f} nats/char" in text
