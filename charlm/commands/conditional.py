"""`charlm train --labeled`: a language model conditioned on labels, trained from LABEL<TAB>TEXT lines.

`charlm train` hands its parsed options here when --labeled is given; the run is a ConditionalLMTask on
the engine, with the same run control as any `charlm train`.
"""
from __future__ import annotations

import math
import os
import sys

import click


def _dumps(obj) -> str:
    """A --json line: strict JSON (a non-finite figure as null), as every charlm command prints."""
    from charlm.cli import _dumps as dumps
    return dumps(obj)


def train_labeled(ctx, p: dict):
    from charlm.cli import _check_out, _compile_notice, set_threads
    from charlm.commands.runs import exit_if_interrupted, resume_state
    from charlm.errors import CharlmError
    out, quiet = p["out"], p["quiet"]
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    if len(p["corpus"]) != 1:
        raise CharlmError("--labeled: give one training file of LABEL<TAB>TEXT lines")
    if not p["valid_path"]:
        raise CharlmError("--labeled: give --valid FILE (labeled lines, the same format)")
    _check_out(out)
    state, p = resume_state(ctx, dict(p), out, log)
    set_threads(p["threads"])

    from charlm import engine
    from charlm.config import ConditionalConfig
    from charlm.options import pick
    from charlm.tasks.classify import load_data
    from charlm.tasks.conditional import ConditionalLMTask, ConditionalTrainConfig

    if not (p["epochs"] or p["max_steps"] or p["time_budget"]):
        p["epochs"] = 10
    p["embed"] = p["embed"] or p["hidden"]
    if p["lr"] is None:
        p["lr"] = 2e-3 if p["optimizer"] == "adam" else 1.0
    p.setdefault("class_sampling", "none")
    tc = pick(ConditionalTrainConfig, p)
    data_path = p["corpus"][0]
    log(f"reading {data_path} and {p['valid_path']}")
    data = load_data(data_path, p["valid_path"], p["level"], p["lowercase"], p["min_count"], p["max_vocab"],
                     "auto", p["encoding_errors"])
    if data.dropped:
        log(f"note: {data.dropped:,} validation lines have labels the training data lacks; they are left out")
    cfg = ConditionalConfig(level=p["level"], cell=p["cell"], layers=p["layers"], hidden=p["hidden"],
                            embed=p["embed"], vocab_size=len(data.vocab), unk_id=data.vocab.unk_id,
                            eos_id=data.vocab.eos_id, lowercase=p["lowercase"], tied=p["tie_weights"],
                            activation=p["activation"], gru_variant=p["gru_variant"], peephole=p["peephole"],
                            condition=p["condition"], labels=len(data.labels), label_embed=p["label_embed"])
    log(f"{len(data.train):,} training and {len(data.valid):,} validation texts, {len(data.labels)} labels, "
        f"vocabulary {len(data.vocab):,}; model {cfg.describe()}")
    _compile_notice(log)
    run_config = {"corpus": [os.path.abspath(data_path)], "valid": os.path.abspath(p["valid_path"]),
                  **{k: p[k] for k in ("level", "lowercase", "min_count", "max_vocab", "encoding_errors")},
                  "format": "auto"}
    task = ConditionalLMTask(data, cfg, tc)
    res = engine.run(task, out, progress=not quiet and sys.stderr.isatty(), log=log, resume=state,
                     checkpoint_every=p["checkpoint_every"], on_nonfinite=p["on_nonfinite"], threads=p["threads"],
                     run_config=run_config)
    vloss = (res.final or res.last).get("valid_loss", math.nan)
    unit = "char" if p["level"] == "char" else "token"
    if p["as_json"]:
        d = {k: getattr(res, k) for k in ("out", "steps", "epochs", "tokens", "seconds", "train_loss", "best",
                                         "best_step", "stopped_by", "skipped", "resumed_from", "state_path")}
        d.update(valid_loss=vloss, valid_bits=vloss / math.log(2), valid_tokens=task.valid_tokens)
        click.echo(_dumps(d))
    else:
        how = {"interrupted": "interrupted", "time-budget": "time budget reached"}.get(res.stopped_by, "done")
        click.echo(f"{how}: {res.steps:,} steps ({res.epochs:.2f} epochs) in {res.seconds:.0f} s, "
                   f"{res.tokens / max(res.seconds, 1e-9):,.0f} tok/s; train loss {res.train_loss:.4f}")
        click.echo(f"validation (each line given its label): {vloss:.4f} nats/{unit}, {vloss / math.log(2):.4f} "
                   f"bits/{unit} ({task.valid_tokens:,} tokens); saved {out}")
    exit_if_interrupted(res, ["charlm", "train", data_path, "--labeled", "--valid", p["valid_path"], "--resume",
                              "-o", out], p["threads"])
