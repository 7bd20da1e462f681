"""`charlm seq2seq`: encoder-decoder models with optional attention (train, predict, evaluate)."""
from __future__ import annotations

import json
import os
import sys
import time

import click

from charlm.options import model_options, optimizer_options, pick, run_options, threads_option

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
LEVEL = click.Choice(["char", "word"])


@click.group(context_settings=CONTEXT)
def seq2seq():
    """Encoder-decoder models that read a whole input and write an output of another length
    (grapheme to phoneme, transliteration): a (bidirectional) encoder, a bridge to the decoder's start
    state, a decoder fed the previous target token, and optional Luong attention.

    Data: one pair per line, SOURCE<TAB>TARGET.

    \b
    Examples:
      charlm seq2seq train cmudict/train.tsv --valid cmudict/valid.tsv --time-budget 1800 -o g2p.safetensors
      charlm seq2seq predict -m g2p.safetensors thought charlm --beam 5
      charlm seq2seq evaluate -m g2p.safetensors cmudict/valid.tsv --show-errors 10
    """


@seq2seq.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path())
@click.option("--valid", "valid_path", type=click.Path(), required=True, help="Validation pairs (same format).")
@click.option("--source-level", type=LEVEL, default="char", show_default=True, help="Source tokens.")
@click.option("--target-level", type=LEVEL, default="word", show_default=True,
              help="Target tokens (word: space-separated, e.g. phonemes).")
@click.option("--lowercase", is_flag=True, help="Lower-case the sources.")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tokens seen fewer times become <unk>.")
@click.option("--max-vocab", type=click.IntRange(min=3), default=None, help="At most this many tokens per side.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True)
@model_options(hidden=256, layers=1, bidirectional=False)
@click.option("--bidirectional/--unidirectional", default=True, show_default=True, help="The encoder's directions.")
@click.option("--decoder-layers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--decoder-hidden", type=click.IntRange(min=1), default=None,
              help="Decoder hidden units [default: hidden x encoder directions].")
@click.option("--target-embed", type=click.IntRange(min=1), default=None, help="Target embedding [default: --embed].")
@click.option("--attention", type=click.Choice(["none", "dot", "general", "additive"]), default="general",
              show_default=True, help="Luong attention score over the encoder outputs; none: the plain "
                                      "encoder-decoder (the bridge carries everything).")
@optimizer_options(batch_size=64)
@run_options(out="seq2seq.safetensors")
@click.pass_context
def train(ctx, **params):
    """Train an encoder-decoder on SOURCE<TAB>TARGET pairs; the best model by validation word error rate
    is kept. Without --epochs, --max-steps or --time-budget, training runs 10 epochs. Ctrl-C saves
    and prints the command that resumes the run."""
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
    from charlm.config import Seq2SeqConfig
    from charlm.tasks.seq2seq import Seq2SeqTask, Seq2SeqTrainConfig, load_data

    if not (p["epochs"] or p["max_steps"] or p["time_budget"]):
        p["epochs"] = 10
    p["embed"] = p["embed"] or p["hidden"]
    p["target_embed"] = p["target_embed"] or p["embed"]
    p["decoder_hidden"] = p["decoder_hidden"] or p["hidden"] * (2 if p["bidirectional"] else 1)
    if p["lr"] is None:
        p["lr"] = 2e-3 if p["optimizer"] == "adam" else 1.0
    tc = pick(Seq2SeqTrainConfig, p)
    log(f"reading {p['data']} and {p['valid_path']}")
    data = load_data(p["data"], p["valid_path"], p["source_level"], p["target_level"], p["lowercase"],
                     p["min_count"], p["max_vocab"], p["encoding_errors"])
    arch = {k: p[k] for k in ("lowercase", "cell", "layers", "hidden", "embed", "activation", "gru_variant",
                              "peephole", "bidirectional", "target_level", "decoder_layers", "decoder_hidden",
                              "target_embed", "attention")}
    cfg = Seq2SeqConfig(level=p["source_level"], vocab_size=len(data.source), unk_id=data.source.unk_id,
                        eos_id=data.source.eos_id, target_vocab_size=len(data.target),
                        target_unk_id=data.target.unk_id, target_eos_id=data.target.eos_id, **arch)
    log(f"{len(data.train_src):,} training pairs, {len(data.valid_src):,} validation pairs "
        f"({len(data.valid_inputs):,} distinct sources); vocabularies {len(data.source)} source, "
        f"{len(data.target)} target; model {cfg.describe()}")
    if data.unknown["source"] or data.unknown["target"]:
        log(f"note: the validation pairs hold {data.unknown['source']} source and {data.unknown['target']} target "
            f"tokens the training pairs lack (<unk>)")
    _compile_notice(log)
    run_config = {"data": os.path.abspath(p["data"]), "valid": os.path.abspath(p["valid_path"]),
                  **{k: p[k] for k in ("source_level", "target_level", "lowercase", "min_count", "max_vocab",
                                       "encoding_errors")}}
    task = Seq2SeqTask(data, cfg, tc)
    res = engine.run(task, out, progress=not quiet and sys.stderr.isatty(), log=log, resume=state,
                     checkpoint_every=p["checkpoint_every"], on_nonfinite=p["on_nonfinite"], threads=p["threads"],
                     run_config=run_config)
    final = res.final or res.last
    if p["as_json"]:
        d = {k: getattr(res, k) for k in ("out", "steps", "epochs", "tokens", "seconds", "train_loss", "best",
                                         "best_step", "stopped_by", "skipped", "resumed_from", "state_path")}
        d.update(valid=final, valid_exact=res.final is not None)
        click.echo(json.dumps(d, allow_nan=False))
    else:
        how = {"interrupted": "interrupted", "time-budget": "time budget reached"}.get(res.stopped_by, "done")
        click.echo(f"{how}: {res.steps:,} steps ({res.epochs:.2f} epochs) in {res.seconds:.0f} s, "
                   f"{res.tokens / max(res.seconds, 1e-9):,.0f} target tok/s; train loss {res.train_loss:.4f}")
        kept = f"best WER at step {res.best_step:,}" if tc.keep == "best" else "last step"
        click.echo(f"validation (greedy): WER {final.get('valid_wer', float('nan')):.4f}, token error rate "
                   f"{final.get('valid_ter', float('nan')):.4f}, loss {final.get('valid_loss', float('nan')):.4f} "
                   f"({kept}); saved {out}")
    exit_if_interrupted(res, ["charlm", "seq2seq", "train", p["data"], "--valid", p["valid_path"], "--resume",
                              "-o", out], params["threads"])


def _inputs(items, file):
    from charlm.errors import CharlmError
    if items and file:
        raise CharlmError("give inputs or --file, not both")
    if file:
        from charlm.cli import _read_lines
        return _read_lines(file)
    if list(items) == ["-"]:
        return [line.rstrip("\r\n") for line in sys.stdin]
    if not items:
        raise CharlmError("nothing to convert: give inputs, --file FILE, or - for standard input")
    return list(items)


def decode_options(f):
    for option in reversed([
        click.option("-m", "--model", "model_path", default="seq2seq.safetensors", show_default=True,
                     type=click.Path(dir_okay=False), help="Encoder-decoder file."),
        click.option("--beam", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Beam width (1 = greedy)."),
        click.option("--length-penalty", "alpha", type=click.FloatRange(min=0), default=1.0, show_default=True,
                     help="Rank beam outputs by log p / (tokens + 1)^ALPHA (0: raw log-probability)."),
        click.option("--max-length", type=click.IntRange(min=1), default=None,
                     help="Longest output in tokens [default: 2 x the input + 10]; an input longer than it is "
                          "an error."),
        click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
                     help="Rows decoded together (inputs x beam)."),
        threads_option,
    ]):
        f = option(f)
    return f


@seq2seq.command(context_settings=CONTEXT)
@click.argument("items", nargs=-1)
@decode_options
@click.option("-f", "--file", type=click.Path(), default=None, help="Convert each line of this file.")
@click.option("--num-outputs", "-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="The K best outputs of each input (needs --beam >= K), with their scores.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input.")
@click.option("--quiet", "-q", is_flag=True, help="No summary line on stderr.")
def predict(items, model_path, beam, alpha, max_length, batch_size, threads, file, num_outputs, as_json, quiet):
    """The output of each input: INPUT<TAB>OUTPUT; with -k K, K lines INPUT<TAB>OUTPUT<TAB>LOGP.

    INPUT... on the command line, --file F (one input per line), or - for standard input. Source symbols
    the model has not seen become <unk> (counted on stderr).
    """
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm.transducer import Transducer
    inputs = _inputs(items, file)
    model = Transducer.load(model_path)
    t = time.perf_counter()
    convs = model.predict(inputs, beam, num_outputs, max_length, alpha, batch_size, threads)
    seconds = time.perf_counter() - t
    for c in convs:
        if as_json:
            click.echo(json.dumps(c.as_dict(), ensure_ascii=False))
        elif num_outputs == 1:
            click.echo(f"{c.input}\t{c.output}")
        else:
            for o, s, _, _ in c.outputs:
                click.echo(f"{c.input}\t{o}\t{s:.4f}")
    if not quiet:
        unk = sum(c.unknown for c in convs)
        note = f"; {unk} unknown source symbols (<unk>) in {sum(c.unknown > 0 for c in convs)} inputs" if unk else ""
        trunc = sum(c.outputs[0][3] for c in convs)
        note += f"; {trunc} outputs cut at --max-length" if trunc else ""
        click.echo(f"converted {len(convs):,} inputs in {seconds:.2f} s ({len(convs) / max(seconds, 1e-9):,.0f} "
                   f"inputs/s, {'greedy' if beam == 1 else f'beam {beam}'}){note}", err=True)


@seq2seq.command(context_settings=CONTEXT)
@click.argument("test", type=click.Path())
@decode_options
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True)
@click.option("--show-errors", type=click.IntRange(min=0), default=0, show_default=True,
              help="Print the first N wrong inputs with their output and references.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def evaluate(test, model_path, beam, alpha, max_length, batch_size, threads, encoding_errors, show_errors, as_json):
    """Word error rate (an input is right when its output equals one of its references; lines of the
    same source are grouped) and token error rate (edit distance to the closest reference over its
    length) on a pair file, with the WER by input length."""
    from charlm.cli import set_threads
    set_threads(threads)
    from charlm.transducer import Transducer
    model = Transducer.load(model_path)
    t = time.perf_counter()
    r = model.evaluate(test, beam, max_length, alpha, encoding_errors, batch_size, threads)
    r["seconds"] = round(time.perf_counter() - t, 3)
    errors = r.pop("errors")
    if as_json:
        r["shown_errors"] = errors[:show_errors]
        click.echo(json.dumps(r, ensure_ascii=False))
        return
    click.echo(f"WER {r['wer']:.4f}  token error rate {r['ter']:.4f}  ({r['inputs']:,} inputs from {r['pairs']:,} "
               f"pairs, {'greedy' if beam == 1 else f'beam {beam}'}, {r['seconds']:.1f} s)")
    if r["unknown_tokens"]:
        click.echo(f"unknown source symbols: {r['unknown_tokens']} in {r['inputs_with_unknown']} inputs (<unk>)")
    if r["truncated"]:
        click.echo(f"outputs cut at the length limit: {r['truncated']}")
    click.echo("WER by input length: " + ", ".join(f"{b['length']}: {b['wer']:.3f} ({b['inputs']})"
                                                    for b in r["by_length"]))
    for e in errors[:show_errors]:
        click.echo(f"{e['input']}\t{e['output']}\t(expected {' | '.join(e['references'])})")
