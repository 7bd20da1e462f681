"""`charlm classify`: many-to-one recurrent classifiers (train, predict, evaluate)."""
from __future__ import annotations

import math
import os
import sys
import time

import click


def _dumps(obj) -> str:
    """A --json line: strict JSON (a non-finite figure as null), as every charlm command prints."""
    from charlm.cli import _dumps as dumps
    return dumps(obj)

from charlm.options import (class_sampling_option, model_options, optimizer_options, pick, run_options,
                            threads_option, tokenizer_options)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
models_option = click.option(
    "-m", "--model", "model_path", multiple=True, default=["classifier.safetensors"], show_default=True,
    type=click.Path(dir_okay=False),
    help="Classifier file; -m A -m B ... classify with their ensemble (the mean of the probabilities).")
prior_correction_option = click.option(
    "--prior-correction", "prior_correction", type=float, default=0.0, show_default=True, metavar="TAU",
    help="Divide p(label | text) by p(label)^TAU (the training labels' shares) and renormalise: TAU > 0 "
         "favours small labels (logit adjustment; tune TAU on validation data).")


@click.group(context_settings=CONTEXT)
def classify():
    """Classifiers that read a whole text and give it one label (many-to-one).

    Data: one example per line, LABEL<TAB>TEXT, or fastText's __label__LABEL TEXT.

    \b
    Examples:
      charlm classify train train.tsv --valid valid.tsv --bidirectional --time-budget 300 -o names.safetensors
      charlm classify predict -m names.safetensors Nahmanovich Tadhgan
      charlm classify evaluate -m names.safetensors names/valid.tsv
    """


@classify.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path())
@click.option("--valid", "valid_path", type=click.Path(), required=True, help="Validation file (same format).")
@click.option("--format", "format", type=click.Choice(["auto", "tsv", "fasttext"]), default="auto", show_default=True,
              help="Line format; auto: fasttext when the first line starts with __label__.")
@tokenizer_options()
@model_options(hidden=128, layers=1)
@click.option("--pooling", type=click.Choice(["last", "mean", "max"]), default="last", show_default=True,
              help="The encoder states into one vector: each direction's final state, or the mean or max "
                   "over positions.")
@click.option("--class-weights", type=click.Choice(["none", "balanced", "sqrt"]), default="none", show_default=True,
              help="balanced: weigh each label's examples by 1 / its frequency in the loss; sqrt: by the "
                   "square root of that (a milder correction for imbalanced labels).")
@class_sampling_option("texts")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Train towards (1 - e) one-hot + e / labels instead of the one-hot label.")
@click.option("--select", type=click.Choice(["accuracy", "macro_f1"]), default="accuracy", show_default=True,
              help="The validation figure that keeps the best model.")
@click.option("--init-from", type=click.Path(dir_okay=False), default=None,
              help="Start the embedding and layers from this charlm language model (its tokenizer and "
                   "architecture too), then fine-tune.")
@click.option("--freeze-encoder", is_flag=True, help="With --init-from: train the output layer only.")
@optimizer_options()
@run_options(out="classifier.safetensors")
@click.pass_context
def train(ctx, **params):
    """Train a classifier on labeled lines.

    Without --epochs, --max-steps or --time-budget, training runs 10 epochs. Ctrl-C saves and prints the
    command that resumes the run; the same seed, data and --threads give the same model bit for bit,
    resumed or not.
    """
    from charlm.cli import _check_out, _compile_notice, set_threads
    from charlm.commands.runs import exit_if_interrupted, resume_state
    p = dict(params)
    set_threads(p["threads"])
    out, quiet = p["out"], p["quiet"]
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    _check_out(out)
    state, p = resume_state(ctx, p, out, log)
    set_threads(p["threads"])

    from charlm import engine
    from charlm.config import ClassifyConfig
    from charlm.errors import CharlmError
    from charlm.tasks.classify import ClassifyTask, ClassifyTrainConfig, encoder_from_lm, load_data

    if not (p["epochs"] or p["max_steps"] or p["time_budget"]):
        p["epochs"] = 10
    if p["freeze_encoder"] and not p["init_from"]:
        raise CharlmError("--freeze-encoder needs --init-from (an encoder worth keeping)")
    p["embed"] = p["embed"] or p["hidden"]
    if p["lr"] is None:
        p["lr"] = 2e-3 if p["optimizer"] == "adam" else 1.0
    tc = pick(ClassifyTrainConfig, p)
    init, vocab = None, None
    arch = dict(level=p["level"], lowercase=p["lowercase"], cell=p["cell"], layers=p["layers"], hidden=p["hidden"],
                embed=p["embed"], activation=p["activation"], gru_variant=p["gru_variant"], peephole=p["peephole"],
                bidirectional=p["bidirectional"], pooling=p["pooling"])
    if p["init_from"]:
        probe = ClassifyConfig(vocab_size=2, labels=2, **arch)
        init, vocab = encoder_from_lm(p["init_from"], probe)
    log(f"reading {p['data']} and {p['valid_path']}")
    data = load_data(p["data"], p["valid_path"], p["level"], p["lowercase"], p["min_count"], p["max_vocab"],
                     p["format"], p["encoding_errors"], vocab)
    if data.dropped:
        log(f"note: {data.dropped:,} validation lines have labels the training data lacks; they are left out")
    cfg = ClassifyConfig(vocab_size=len(data.vocab), unk_id=data.vocab.unk_id, eos_id=data.vocab.eos_id,
                         labels=len(data.labels), **arch)
    log(f"{len(data.train):,} training and {len(data.valid):,} validation texts, {len(data.labels)} labels, "
        f"vocabulary {len(data.vocab):,}; model {cfg.describe()}")
    _compile_notice(log)
    run_config = {"data": os.path.abspath(p["data"]), "valid": os.path.abspath(p["valid_path"]),
                  **{k: p[k] for k in ("level", "lowercase", "min_count", "max_vocab", "encoding_errors", "format")},
                  "init_from": os.path.abspath(p["init_from"]) if p["init_from"] else None}
    task = ClassifyTask(data, cfg, tc, init)
    res = engine.run(task, out, progress=not quiet and sys.stderr.isatty(), log=log, resume=state,
                     checkpoint_every=p["checkpoint_every"], on_nonfinite=p["on_nonfinite"], threads=p["threads"],
                     run_config=run_config)
    final = res.final or res.last
    if p["as_json"]:
        d = {k: getattr(res, k) for k in ("out", "steps", "epochs", "tokens", "seconds", "train_loss", "best",
                                         "best_step", "stopped_by", "skipped", "resumed_from", "state_path")}
        d.update(select=tc.select, valid=final, valid_exact=res.final is not None)
        click.echo(_dumps(d))
    else:
        how = {"interrupted": "interrupted", "time-budget": "time budget reached"}.get(res.stopped_by, "done")
        click.echo(f"{how}: {res.steps:,} steps ({res.epochs:.2f} epochs) in {res.seconds:.0f} s, "
                   f"{res.tokens / max(res.seconds, 1e-9):,.0f} tok/s; train loss {res.train_loss:.4f}")
        kept = f"best {tc.select.replace('_', '-')} at step {res.best_step:,}" if tc.keep == "best" else "last step"
        click.echo(f"validation: accuracy {final.get('valid_accuracy', math.nan):.4f}, macro-F1 "
                   f"{final.get('valid_macro_f1', math.nan):.4f}, loss {final.get('valid_loss', math.nan):.4f} "
                   f"({len(data.valid):,} texts, {kept}); saved {out}")
    exit_if_interrupted(res, ["charlm", "classify", "train", p["data"], "--valid", p["valid_path"], "--resume",
                              "-o", out], params["threads"])


def _texts(texts, file):
    from charlm.errors import CharlmError
    if texts and file:
        raise CharlmError("give texts or --file, not both")
    if file:
        from charlm.cli import _read_lines
        return _read_lines(file)
    if list(texts) == ["-"]:
        return [line.rstrip("\r\n") for line in sys.stdin]
    if not texts:
        raise CharlmError("nothing to classify: give texts, --file FILE, or - for standard input")
    return list(texts)


@classify.command(context_settings=CONTEXT)
@click.argument("texts", nargs=-1)
@models_option
@click.option("-f", "--file", type=click.Path(), default=None, help="Classify each line of this file.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Show the K best labels.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text.")
@prior_correction_option
@click.option("--quiet", "-q", is_flag=True, help="No throughput line on stderr.")
@threads_option
def predict(texts, model_path, file, top_k, prior_correction, as_json, quiet, threads):
    """The label of each text, with its probability: LABEL<TAB>P[<TAB>LABEL2<TAB>P2 ...]<TAB>TEXT.

    TEXT... on the command line, --file F (one text per line), or - for standard input.
    """
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm.classifier import load_classifier
    items = _texts(texts, file)
    clf = load_classifier(model_path, prior_correction)
    t = time.perf_counter()
    preds = clf.predict(items, top_k, threads)
    seconds = time.perf_counter() - t
    for pr in preds:
        if as_json:
            click.echo(_dumps(pr.as_dict()))
        else:
            best = "\t".join(f"{label}\t{p:.4f}" for label, p in pr.top)
            click.echo(f"{best}\t{_printable(pr.text)}")
    if not quiet:
        rate = len(preds) / max(seconds, 1e-9)
        click.echo(f"classified {len(preds):,} texts in {seconds:.2f} s ({rate:,.0f} texts/s)", err=True)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


@classify.command(context_settings=CONTEXT)
@click.argument("test", type=click.Path())
@models_option
@click.option("--format", "format", type=click.Choice(["auto", "tsv", "fasttext"]), default="auto", show_default=True)
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Draw the confusion matrix to this image file (needs matplotlib).")
@prior_correction_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@threads_option
def evaluate(test, model_path, format, encoding_errors, plot_path, prior_correction, as_json, threads):
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix on a labeled file."""
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm.classifier import load_classifier
    from charlm.errors import CharlmError
    clf = load_classifier(model_path, prior_correction)
    report = clf.evaluate(test, format, encoding_errors, threads)
    if report["examples"] == 0:
        raise CharlmError(f"{test}: none of its labels is one the model knows ({', '.join(clf.labels[:5])}, ...)")
    if plot_path:
        from charlm.plot import plot_confusion
        plot_confusion(report, plot_path)
    if as_json:
        click.echo(_dumps(report))
        return
    click.echo(report_text(report))
    if plot_path:
        click.echo(f"confusion matrix drawn to {plot_path}", err=True)


def report_text(r: dict) -> str:
    labels = r["labels"]
    w = max(8, max(len(label) for label in labels))
    lines = [f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  ({r['examples']:,} texts)"]
    unknown = r["unknown_labels"]
    if unknown["lines"]:
        lines.append(f"left out: {unknown['lines']:,} lines with labels the model does not know "
                     f"({', '.join(_printable(x) for x in unknown['labels'][:10])})")
    lines.append("")
    lines.append(f"{'label':<{w}}  precision  recall      F1  support")
    for i, label in enumerate(labels):
        lines.append(f"{_printable(label):<{w}}  {r['precision'][i]:9.4f}  {r['recall'][i]:6.4f}  {r['f1'][i]:6.4f}"
                     f"  {r['support'][i]:7,}")
    lines.append("")
    short = [_printable(label)[:6] for label in labels]
    cw = max(6, max(len(str(v)) for row in r["confusion"] for v in row))
    lines.append("confusion (rows: gold, columns: predicted)")
    lines.append(" " * w + "  " + " ".join(f"{s:>{cw}}" for s in short))
    for label, row in zip(labels, r["confusion"]):
        lines.append(f"{_printable(label):<{w}}  " + " ".join(f"{v:>{cw}}" for v in row))
    return "\n".join(lines)


@classify.command(context_settings=CONTEXT)
@click.option("-m", "--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="A language model trained with --labeled (the generator).")
@click.option("--judge", "judge_path", required=True, multiple=True, type=click.Path(dir_okay=False),
              help="A classifier that judges whether each sample has the label it was generated for (given "
                   "several times: their ensemble).")
@click.option("--judge-prior-correction", "judge_prior", type=float, default=0.0, show_default=True, metavar="TAU",
              help="The judge's --prior-correction (see classify predict). The samples come N per label, so "
                   "their labels are uniform, not the judge's training shares: TAU 1 is Bayes' rule for that "
                   "prior (label shift). With TAU, the uncorrected accuracy is reported too.")
@click.option("--train", "train_path", type=click.Path(), default=None,
              help="The generator's training file: a sample found in it is not novel.")
@click.option("-n", "--num-samples", type=click.IntRange(min=1), default=50, show_default=True,
              help="Samples per label.")
@click.option("--temp", type=click.FloatRange(min=0, min_open=True), default=0.8, show_default=True)
@click.option("--max-length", type=click.IntRange(min=1), default=60, show_default=True,
              help="Tokens at most per sample (a sample ends at its first end of line).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--show", type=click.IntRange(min=0), default=3, show_default=True, help="Samples shown per label.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@threads_option
def judge(model_path, judge_path, judge_prior, train_path, num_samples, temp, max_length, seed, show, as_json, threads):
    """How well a conditional language model generates for each label: samples per label, their novelty
    (the share not in the training texts) and the judge's accuracy (the share the judge classifier
    assigns to the requested label)."""
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm import labeled
    from charlm.classifier import load_classifier
    from charlm.errors import CharlmError
    from charlm.lm import LanguageModel
    gen = LanguageModel.load(model_path)
    if gen.labels is None:
        raise CharlmError(f"-m {model_path}: not a conditional language model (train one with charlm train --labeled)")
    from charlm.classify import correct_prior
    clf = load_classifier(judge_path)
    clf.check_prior_correction(judge_prior)              # applied below, beside the uncorrected figure
    seen = set(labeled.read(train_path).texts) if train_path else None
    rows = []
    for i, label in enumerate(gen.labels):
        texts = [t.strip() for t in gen.sample(length=max_length, temp=temp, stop_at_eos=True,
                                               num_samples=num_samples, seed=seed + i, label=label)]
        row = {"label": label, "samples": texts[:show], "judge_accuracy": None, "judge_accuracy_uncorrected": None,
               "novelty": None if seen is None else sum(t not in seen for t in texts) / len(texts)}
        if label in clf.labels:
            prob = clf.probabilities(texts, threads)
            k = clf.labels.index(label)
            row["judge_accuracy_uncorrected"] = float((prob.argmax(axis=1) == k).mean())
            row["judge_accuracy"] = float((correct_prior(prob, clf.log_prior, judge_prior).argmax(axis=1) == k).mean())
        rows.append(row)

    def mean(key):
        got = [r[key] for r in rows if r[key] is not None]
        return sum(got) / len(got) if got else None
    summary = {"labels": rows, "num_samples": num_samples, "temp": temp, "judge_prior_correction": judge_prior,
               "judge_accuracy": mean("judge_accuracy"), "novelty": mean("novelty"),
               "judge_accuracy_uncorrected": mean("judge_accuracy_uncorrected")}
    if as_json:
        click.echo(_dumps(summary))
        return
    w = max(len(r["label"]) for r in rows)
    raw = bool(judge_prior)
    click.echo(f"{'label':<{w}}  judge  " + (" as-is  " if raw else "") + " novel  samples")
    for r in rows:
        j = "-" if r["judge_accuracy"] is None else f"{r['judge_accuracy']:.2f}"
        u = "-" if r["judge_accuracy_uncorrected"] is None else f"{r['judge_accuracy_uncorrected']:.2f}"
        nv = "-" if r["novelty"] is None else f"{r['novelty']:.2f}"
        click.echo(f"{_printable(r['label']):<{w}}  {j:>5}  " + (f"{u:>5}  " if raw else "") +
                   f"{nv:>6}  {', '.join(_printable(s) for s in r['samples'])}")
    mean_j = "-" if summary["judge_accuracy"] is None else f"{summary['judge_accuracy']:.4f}"
    mean_n = "-" if summary["novelty"] is None else f"{summary['novelty']:.4f}"
    click.echo(f"mean over {len(rows)} labels: judge accuracy {mean_j}, novelty {mean_n} "
               f"({num_samples} samples each, temperature {temp})")
    if judge_prior and summary["judge_accuracy_uncorrected"] is not None:
        click.echo(f"the judge with prior correction {judge_prior:g}; without it, judge accuracy "
                   f"{summary['judge_accuracy_uncorrected']:.4f}")
