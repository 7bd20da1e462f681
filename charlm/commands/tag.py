"""`charlm tag`: bidirectional many-to-many taggers, one tag per token (train, predict, evaluate)."""
from __future__ import annotations

import json
import math
import os
import sys
import time

import click

from charlm.options import model_options, optimizer_options, pick, run_options, threads_option

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
FORMAT_HELP = "conllu: CoNLL-U (10 columns); conll: TOKEN<TAB>TAG; auto: detected from the first lines."
COLUMN_HELP = "The tag column: upos, xpos (CoNLL-U) or a column number N (1-based) [default: upos; conll: the last]."


@click.group(context_settings=CONTEXT)
def tag():
    """Taggers that give every token a tag (part of speech, BIO entity spans): many-to-many.

    Data: CoNLL-U (the tag in --column upos|xpos|N; multiword and empty-node lines skipped, comments kept)
    or two-column CoNLL (TOKEN<TAB>TAG, a blank line between sentences).

    \b
    Examples:
      charlm tag train en_ewt-ud-train.conllu --valid en_ewt-ud-dev.conllu --time-budget 1200 -o upos.safetensors
      echo "I saw her duck ." | charlm tag predict -m upos.safetensors
      charlm tag predict -m upos.safetensors en_ewt-ud-dev.conllu > tagged.conllu
      charlm tag evaluate -m upos.safetensors en_ewt-ud-dev.conllu
    """


@tag.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path())
@click.option("--valid", "valid_path", type=click.Path(), required=True, help="Validation file (same format).")
@click.option("--format", "format", type=click.Choice(["auto", "conllu", "conll"]), default="auto", show_default=True,
              help=FORMAT_HELP)
@click.option("--column", default="auto", help=COLUMN_HELP)
@click.option("--lowercase", is_flag=True, help="Lower-case words before the word lookup (the letters keep case).")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Words seen fewer times become <unk>.")
@click.option("--max-vocab", type=click.IntRange(min=3), default=None,
              help="Keep at most this many words (the two specials included).")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
              help="What to do with invalid UTF-8.")
@model_options(hidden=128, layers=2, bidirectional=False)
@click.option("--char/--no-char", "char", default=True, show_default=True,
              help="A character BiRNN over each word's letters, its final states beside the word embedding.")
@click.option("--char-embed", type=click.IntRange(min=1), default=32, show_default=True, help="Character embedding size.")
@click.option("--char-hidden", type=click.IntRange(min=1), default=64, show_default=True,
              help="Hidden units of the character BiRNN per direction.")
@optimizer_options()
@click.option("--word-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True,
              help="Probability that a word seen once in training becomes <unk> in a training step.")
@click.option("--word-dropout-alpha", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="If > 0, instead: every training word becomes <unk> with probability a / (a + its count).")
@run_options(out="tagger.safetensors")
@click.pass_context
def train(ctx, **params):
    """Train a tagger on tagged sentences.

    Without --epochs, --max-steps or --time-budget, training runs 10 epochs. The model with the best
    validation accuracy is kept. Ctrl-C saves and prints the command that resumes the run; the same seed,
    data and --threads give the same model bit for bit, resumed or not.
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
    from charlm.config import TagConfig
    from charlm.tasks.tag import TagTask, TagTrainConfig, load_data

    engine.check_outputs(out, [p["data"], p["valid_path"]])
    if not (p["epochs"] or p["max_steps"] or p["time_budget"]):
        p["epochs"] = 10
    p["embed"] = p["embed"] or p["hidden"]
    if p["lr"] is None:
        p["lr"] = 2e-3 if p["optimizer"] == "adam" else 1.0
    tc = pick(TagTrainConfig, p)
    log(f"reading {p['data']} and {p['valid_path']}")
    data = load_data(p["data"], p["valid_path"], p["format"], p["column"], p["lowercase"], p["min_count"],
                     p["max_vocab"], p["encoding_errors"])
    if data.unknown_valid:
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(data.unknown_valid.items())[:8])
        log(f"note: {sum(data.unknown_valid.values()):,} validation tokens have tags the training data lacks "
            f"({shown}); they count as errors")
    cfg = TagConfig(vocab_size=len(data.vocab), unk_id=data.vocab.unk_id, eos_id=data.vocab.eos_id,
                    lowercase=p["lowercase"], cell=p["cell"], layers=p["layers"], hidden=p["hidden"],
                    embed=p["embed"], activation=p["activation"], gru_variant=p["gru_variant"],
                    peephole=p["peephole"], tags=len(data.tags), chars=len(data.chars), char_embed=p["char_embed"],
                    char_hidden=p["char_hidden"], char_features=p["char"])
    log(f"{len(data.train.words):,} training sentences ({data.train.tokens:,} tokens), {len(data.valid.words):,} "
        f"validation ({data.valid.tokens:,}); {len(data.tags)} tags in column {data.column + 1}, "
        f"{len(data.vocab):,} words, {len(data.chars):,} chars; model {cfg.describe()}")
    _compile_notice(log)
    run_config = {"data": os.path.abspath(p["data"]), "valid": os.path.abspath(p["valid_path"]),
                  **{k: p[k] for k in ("min_count", "max_vocab", "encoding_errors", "format", "column")}}
    task = TagTask(data, cfg, tc)
    res = engine.run(task, out, progress=not quiet and sys.stderr.isatty(), log=log, resume=state,
                     checkpoint_every=p["checkpoint_every"], on_nonfinite=p["on_nonfinite"], threads=p["threads"],
                     run_config=run_config)
    final = res.final or res.last
    if p["as_json"]:
        d = {k: getattr(res, k) for k in ("out", "steps", "epochs", "tokens", "seconds", "train_loss", "best",
                                         "best_step", "stopped_by", "skipped", "resumed_from", "state_path")}
        d.update(valid=final, valid_exact=res.final is not None)
        click.echo(json.dumps(d, allow_nan=False, default=_finite))
    else:
        how = {"interrupted": "interrupted", "time-budget": "time budget reached"}.get(res.stopped_by, "done")
        click.echo(f"{how}: {res.steps:,} steps ({res.epochs:.2f} epochs) in {res.seconds:.0f} s, "
                   f"{res.tokens / max(res.seconds, 1e-9):,.0f} tok/s; train loss {res.train_loss:.4f}")
        kept = f"best accuracy at step {res.best_step:,}" if tc.keep == "best" else "last step"
        click.echo(f"validation: accuracy {final.get('valid_accuracy', math.nan):.4f}, loss "
                   f"{final.get('valid_loss', math.nan):.4f} ({data.valid.tokens:,} tokens, {kept}); saved {out}")
    exit_if_interrupted(res, ["charlm", "tag", "train", p["data"], "--valid", p["valid_path"], "--resume",
                              "-o", out], params["threads"])


def _finite(v):
    raise TypeError(f"not JSON: {v!r}")


@tag.command(context_settings=CONTEXT)
@click.argument("file", default="-", type=click.Path(allow_dash=True))
@click.option("-m", "--model", "model_path", default="tagger.safetensors", show_default=True,
              type=click.Path(dir_okay=False), help="Tagger file.")
@click.option("--format", "format", type=click.Choice(["auto", "conllu", "conll", "text"]), default="auto",
              show_default=True, help="Input: CoNLL-U, CoNLL (TOKEN[<TAB>TAG]) or plain text (one sentence per "
                                      "line, tokens separated by spaces); auto: CoNLL-U when a line has 10 "
                                      "tab-separated columns or starts with #, CoNLL when it has a tab, else text.")
@click.option("--column", default="auto",
              help="The column to fill: upos, xpos or N (1-based) [default: the model's, for CoNLL-U].")
@click.option("--json", "as_json", is_flag=True, help="Plain text in: one JSON object per sentence.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Sentences per batch (similar lengths together).")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No throughput line on stderr.")
@threads_option
def predict(file, model_path, format, column, as_json, batch_size, encoding_errors, quiet, threads):
    """Tag FILE (or standard input, -).

    CoNLL-U in: the same file out with the tag column filled, every other byte as read. CoNLL in: the
    tag column filled (added when the file has the tokens only). Plain text in: TOKEN/TAG per token,
    space-separated, one sentence per line (an empty line stays empty), or --json.
    """
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm import conllu
    from charlm.tagger import Tagger
    tagger = Tagger.load(model_path)
    text = conllu.read_text(file, encoding_errors)
    if format == "auto":
        format = _detect(text)
    t = time.perf_counter()
    if format == "text":
        lines = conllu.split_lines(text)
        sentences = [line.rstrip("\r\n").split() for line in lines]
        tags = tagger.tag(sentences, batch_size=batch_size, threads=threads)
        for words, ts in zip(sentences, tags):
            if as_json:
                click.echo(json.dumps({"tokens": words, "tags": ts}, ensure_ascii=False))
            else:
                click.echo(" ".join(f"{w}/{x}" for w, x in zip(words, ts)))
        n = sum(len(s) for s in sentences)
    else:
        col = tagger.conllu_column if column == "auto" and format == "conllu" else column
        doc = conllu.read(file, format, col, encoding_errors, require_tags=False, text=text)
        tags = tagger.tag([s.words for s in doc.sentences], batch_size=batch_size, threads=threads)
        sys.stdout.write(doc.render(tags))
        sys.stdout.flush()
        n = doc.tokens
    seconds = time.perf_counter() - t
    if not quiet:
        click.echo(f"tagged {n:,} tokens in {seconds:.2f} s ({n / max(seconds, 1e-9):,.0f} tokens/s)", err=True)


def _detect(text: str) -> str:
    from charlm import conllu
    for line in conllu.split_lines(text.lstrip(conllu.BOM)):
        body = line.rstrip("\r\n")
        if not body.strip():
            continue
        if body.startswith("#") or len(body.split("\t")) == conllu.CONLLU_COLUMNS:
            return "conllu"
        return "conll" if "\t" in body else "text"
    return "text"


@tag.command(context_settings=CONTEXT)
@click.argument("gold", type=click.Path(allow_dash=True))
@click.option("-m", "--model", "model_path", default="tagger.safetensors", show_default=True,
              type=click.Path(dir_okay=False), help="Tagger file.")
@click.option("--format", "format", type=click.Choice(["auto", "conllu", "conll"]), default="auto", show_default=True,
              help=FORMAT_HELP)
@click.option("--column", default="auto", help="The gold tag column [default: the model's, for CoNLL-U].")
@click.option("--spans", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
              help="BIO/IOB2 span precision/recall/F1 as conlleval; auto: when every tag is O or B-/I-TYPE.")
@click.option("--confusions", type=click.IntRange(min=0), default=10, show_default=True,
              help="Show this many most frequent confusions.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@threads_option
def evaluate(gold, model_path, format, column, spans, confusions, encoding_errors, as_json, threads):
    """Token accuracy (all, words seen and unseen in training), per-tag precision/recall/F1, the most
    frequent confusions, and BIO span figures on a tagged file."""
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm.tagger import Tagger
    tagger = Tagger.load(model_path)
    report = tagger.evaluate(gold, format, column, spans, encoding_errors, threads, confusions)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, allow_nan=False))
    else:
        click.echo(report_text(report))


def report_text(r: dict) -> str:
    lines = [f"accuracy {r['accuracy']:.4f}  ({r['tokens']:,} tokens, {r['sentences']:,} sentences)",
             f"seen     {_acc(r['seen'])}", f"unseen   {_acc(r['unseen'])}"]
    unknown = r["unknown_tags"]
    if unknown["tokens"]:
        shown = ", ".join(f"{t} ({n})" for t, n in list(unknown["tags"].items())[:10])
        lines.append(f"gold tags the model does not know: {unknown['tokens']:,} tokens ({shown}); counted as errors")
    if r.get("spans"):
        s = r["spans"]
        lines.append(f"spans    precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}  "
                     f"({s['gold']:,} gold, {s['predicted']:,} predicted, {s['correct']:,} correct)")
    w = max([3] + [len(t) for t in r["per_tag"]])
    lines += ["", f"{'tag':<{w}}  precision  recall      F1  support"]
    for t, m in r["per_tag"].items():
        lines.append(f"{t:<{w}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  {m['support']:7,}")
    if r.get("spans") and r["spans"]["per_type"]:
        lines += ["", f"{'span':<{w}}  precision  recall      F1  support"]
        for t, m in r["spans"]["per_type"].items():
            lines.append(f"{t:<{w}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:6.4f}  {m['support']:7,}")
    if r["confusions"]:
        lines += ["", "most frequent confusions (gold -> predicted: tokens)"]
        lines += [f"  {c['gold']} -> {c['predicted']}: {c['count']:,}" for c in r["confusions"]]
    return "\n".join(lines)


def _acc(part: dict) -> str:
    if not part["tokens"]:
        return "-       (0 tokens)"
    return f"{part['accuracy']:.4f}  ({part['tokens']:,} tokens)"
