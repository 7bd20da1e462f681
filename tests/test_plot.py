"""charlm.plot: loss curves from the training log (PNG, SVG, PDF), the log summary, `charlm plot` and its
errors, and the message when matplotlib is missing.

The log comes two ways: a small hand-written one, and a real one written by `charlm train` on a 20 kB slice
of tinyshakespeare. Drawing tests skip without matplotlib; the error tests run either way (the logs are
checked before matplotlib is imported).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from charlm.cli import main
from charlm.errors import CharlmError
from charlm.commands.plot import plot_command
from charlm.plot import MISSING_MATPLOTLIB, model_log_path, plot_log, read_log, summarize_log, summary_line
import support
from support import play, runner

LOG_KEYS = {"step", "epoch", "tokens", "train_loss", "valid_loss", "valid_bpc", "lr", "grad_norm", "tok_s", "wall"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------- helpers

@pytest.fixture
def cli(monkeypatch):
    """charlm's group with `plot` registered as cli.py does (restored afterwards)."""
    monkeypatch.setitem(main.commands, "plot", plot_command)

    def invoke(*args):
        return runner().invoke(main, [str(a) for a in args])
    return invoke


def record(step, train, valid=None, tokens_per_step=64, seconds_per_step=0.01):
    return {"step": step, "epoch": round(step / 100, 4), "tokens": step * tokens_per_step, "train_loss": train,
            "valid_loss": valid, "lr": 0.002, "grad_norm": None if valid is not None else 0.5,
            "tok_s": tokens_per_step / seconds_per_step, "wall": round(step * seconds_per_step, 3)}


FAKE = [record(50, 3.9), record(100, 3.5, 3.6), record(150, 3.1), record(200, 2.8, 3.0), record(250, 2.7),
        record(300, 2.6, 3.1)]


def write_log(path, records=FAKE, tail=""):
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


@pytest.fixture
def fake_log(tmp_path):
    return write_log(tmp_path / "model.log.jsonl")


@pytest.fixture(scope="module")
def real_log(tmp_path_factory):
    """The log `charlm train` writes next to a tiny model: 60 steps, validation every 20."""
    d = tmp_path_factory.mktemp("train")
    (d / "slice.txt").write_text(play(20000), encoding="utf-8")
    out = d / "model.safetensors"
    res = runner().invoke(main, ["train", str(d / "slice.txt"), "--hidden", "16", "--layers", "1", "--batch-size", "4",
                                 "--seq-len", "16", "--max-steps", "60", "--valid-every", "20", "-o", str(out), "-q"])
    assert res.exit_code == 0, (res.output, res.exc_info)
    log = d / "model.log.jsonl"
    assert log.is_file() and model_log_path(out) == log
    return log


def check_image(path, fmt):
    data = Path(path).read_bytes()
    assert len(data) > 1000
    if fmt == "png":
        assert data.startswith(PNG_MAGIC)
    elif fmt == "svg":
        assert b"<svg" in data
    else:
        assert data.startswith(b"%PDF")
    return data


# --------------------------------------------------------------------------------------------- logs

def test_real_log_records(real_log):
    records = read_log(real_log)
    assert all(set(r) == LOG_KEYS for r in records)
    steps = [r["step"] for r in records]
    assert steps == sorted(steps) and steps[-1] == 60
    valid_steps = [r["step"] for r in records if r["valid_loss"] is not None]
    assert valid_steps == [20, 40, 60]
    assert all(isinstance(r["train_loss"], float) for r in records)


def test_summarize_fake(fake_log):
    s = summarize_log(fake_log)
    assert s["steps"] == 300 and s["records"] == 6 and s["validations"] == 3
    assert s["tokens"] == 300 * 64 and s["wall_seconds"] == pytest.approx(3.0)
    assert s["tok_s"] == pytest.approx(6400)
    assert s["last_train_loss"] == 2.6
    assert (s["best_valid_loss"], s["best_valid_step"]) == (3.0, 200)
    assert s["epochs"] == 3.0
    line = summary_line(s)
    assert "300 steps" in line and "best validation loss 3.0000 at step 200" in line
    json.dumps(s)   # JSON-ready for `charlm info --json`


def test_summarize_real(real_log):
    s = summarize_log(real_log)
    records = read_log(real_log)
    assert s["steps"] == 60 and s["tokens"] == 60 * 4 * 16
    assert s["best_valid_loss"] == min(r["valid_loss"] for r in records if r["valid_loss"] is not None)
    assert s["best_valid_step"] in (20, 40, 60)
    assert s["wall_seconds"] > 0 and s["tok_s"] > 0


def test_summarize_without_validation(tmp_path):
    s = summarize_log(write_log(tmp_path / "a.log.jsonl", [record(50, 3.0)]))
    assert s["best_valid_loss"] is None and s["best_valid_step"] is None and s["validations"] == 0
    assert "validation" not in summary_line(s)


def test_resumed_run(tmp_path):
    """A resumed run's log holds an event record at the resume point; it is not a training record."""
    resumed = FAKE[:3] + [{"step": 150, "event": "resumed", "wall": 1.5}] + FAKE[3:]
    log = write_log(tmp_path / "resumed.log.jsonl", resumed)
    s = summarize_log(log)
    assert s["resumes"] == 1 and s["records"] == len(FAKE) and s["steps"] == 300
    assert summarize_log(write_log(tmp_path / "plain.log.jsonl"))["resumes"] == 0
    pytest.importorskip("matplotlib")
    assert b"resumed" in check_image(plot_log([log], tmp_path / "resumed.svg"), "svg")
    check_image(plot_log([log], tmp_path / "resumed_tokens.svg", x="tokens"), "svg")   # the event has no tokens


def test_model_log_path():
    assert model_log_path("run/model.safetensors") == Path("run/model.log.jsonl")
    assert model_log_path("run/model.bin") == Path("run/model.bin.log.jsonl")


# ---------------------------------------------------------------------------------------- drawing

@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_plot_fake(fake_log, tmp_path, fmt):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"loss.{fmt}"
    assert plot_log([str(fake_log)], str(out)) == str(out)
    check_image(out, fmt)


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_plot_real(real_log, tmp_path, fmt):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"loss.{fmt}"
    plot_log([str(real_log)], str(out))
    check_image(out, fmt)


@pytest.mark.parametrize("x", ["step", "tokens", "wall", "epoch"])
def test_plot_x_axes(fake_log, tmp_path, x):
    pytest.importorskip("matplotlib")
    data = check_image(plot_log([fake_log], tmp_path / "x.svg", x=x, title=f"against {x}"), "svg")
    assert f"against {x}".encode() in data


def test_plot_several_runs_are_labelled(real_log, tmp_path):
    """Runs with the same file name in different folders get their folder in the legend."""
    pytest.importorskip("matplotlib")
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    a = write_log(tmp_path / "run1" / "model.log.jsonl")
    b = write_log(tmp_path / "run2" / "model.log.jsonl", [dict(r, train_loss=r["train_loss"] + 0.1) for r in FAKE])
    data = check_image(plot_log([a, b, real_log], tmp_path / "compare.svg"), "svg")
    for label in (b"run1/model train", b"run2/model valid", real_log.parent.name.encode() + b"/model train"):
        assert label in data


def test_plot_only_validation_or_only_train(tmp_path):
    pytest.importorskip("matplotlib")
    only_train = write_log(tmp_path / "t.log.jsonl", [record(50, 3.0)])
    only_valid = write_log(tmp_path / "v.log.jsonl", [dict(record(20, None, 3.2))])
    check_image(plot_log([only_train, only_valid], tmp_path / "one.png"), "png")


def test_plot_tolerates_a_cut_last_line(tmp_path):
    """A run still writing (or killed mid-write) leaves a last line without its newline: it is skipped."""
    pytest.importorskip("matplotlib")
    log = write_log(tmp_path / "live.log.jsonl", FAKE, tail='{"step": 350, "epoch": 3.5, "tok')
    assert len(read_log(log)) == len(FAKE)
    check_image(plot_log([log], tmp_path / "live.png"), "png")


def test_plot_does_not_touch_pyplot_state(fake_log, tmp_path):
    """No pyplot: the caller's backend is left alone and no figure is left open."""
    pytest.importorskip("matplotlib")
    import matplotlib
    backend = matplotlib.get_backend()
    plot_log([fake_log], tmp_path / "a.png")
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


# ---------------------------------------------------------------------------------------- errors

def error(*args, **kwargs) -> str:
    with pytest.raises(CharlmError) as e:
        plot_log(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_log(tmp_path):
    msg = error([tmp_path / "nope.log.jsonl"], tmp_path / "a.png")
    assert "nope.log.jsonl" in msg and "no such log file" in msg
    with pytest.raises(CharlmError, match="no such log file"):
        summarize_log(tmp_path / "nope.log.jsonl")


def test_log_is_a_directory(tmp_path):
    assert "not a file" in error([tmp_path], tmp_path / "a.png")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_log(tmp_path, content):
    log = tmp_path / "empty.log.jsonl"
    log.write_text(content)
    msg = error([log], tmp_path / "a.png")
    assert "empty.log.jsonl" in msg and "empty" in msg
    with pytest.raises(CharlmError, match="empty"):
        summarize_log(log)


def test_malformed_line_is_named(tmp_path):
    log = write_log(tmp_path / "bad.log.jsonl", FAKE[:2], tail='{"step": 150, oops}\n' + json.dumps(FAKE[3]) + "\n")
    msg = error([log], tmp_path / "a.png")
    assert "bad.log.jsonl, line 3:" in msg and "not a JSON record" in msg
    with pytest.raises(CharlmError, match="line 3"):
        summarize_log(log)


@pytest.mark.parametrize("line, problem", [("[1, 2]", "JSON object"), ('{"loss": 3.0}', "no step number"),
                                           ('{"step": "ten"}', "no step number")])
def test_records_that_are_not_records(tmp_path, line, problem):
    log = write_log(tmp_path / "odd.log.jsonl", FAKE[:1], tail=line + "\n")
    msg = error([log], tmp_path / "a.png")
    assert "odd.log.jsonl, line 2:" in msg and problem in msg


def test_not_utf8(tmp_path):
    log = tmp_path / "bin.log.jsonl"
    log.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert "not a charlm training log" in error([log], tmp_path / "a.png")


def test_no_loss_values(tmp_path):
    log = write_log(tmp_path / "noloss.log.jsonl", [record(10, None), record(20, None)])
    msg = error([log], tmp_path / "a.png")
    assert "noloss.log.jsonl" in msg and "no loss values" in msg


def test_no_x_values(tmp_path):
    log = write_log(tmp_path / "old.log.jsonl", [{k: v for k, v in r.items() if k != "wall"} for r in FAKE])
    assert "no 'wall' values" in error([log], tmp_path / "a.png", x="wall")


@pytest.mark.parametrize("name", ["loss.jpg", "loss", "loss.png.txt"])
def test_bad_output_format(fake_log, tmp_path, name):
    msg = error([fake_log], tmp_path / name)
    assert ".png, .svg or .pdf" in msg and name in msg


def test_output_folder_missing(fake_log, tmp_path):
    assert "does not exist" in error([fake_log], tmp_path / "no" / "such" / "a.png")


def test_bad_x(fake_log, tmp_path):
    assert "--x must be one of" in error([fake_log], tmp_path / "a.png", x="time")


def test_no_logs(tmp_path):
    assert "no training log" in error([], tmp_path / "a.png")


def test_missing_matplotlib(fake_log, tmp_path, monkeypatch):
    """Blocked even when matplotlib (and its submodules) were imported earlier in this process."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(CharlmError) as e:
        plot_log([fake_log], tmp_path / "a.png")
    assert str(e.value) == MISSING_MATPLOTLIB == "charlm plot needs matplotlib: pip install 'charlm[plot]'"
    assert not (tmp_path / "a.png").exists()


# ------------------------------------------------------------------------------------------- CLI

def test_cli_plot(cli, fake_log, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp.svg"
    res = cli("plot", fake_log, fake_log, "-o", out, "--x", "tokens", "--title", "two runs")
    assert res.exit_code == 0, (res.output, res.exc_info)
    assert res.stdout.strip() == str(out)
    assert b"two runs" in check_image(out, "svg")


def test_cli_default_out_and_model_path(cli, real_log):
    """Without -o the plot goes next to the log; a model file stands for the log beside it."""
    pytest.importorskip("matplotlib")
    model = real_log.parent / "model.safetensors"
    res = cli("plot", model)
    assert res.exit_code == 0, (res.output, res.exc_info)
    expected = real_log.parent / "model.loss.png"
    assert res.stdout.strip() == str(expected)
    check_image(expected, "png")


def one_line_error(res, *fragments):
    return support.one_line_error(res, *fragments, no_stdout=True)


def test_cli_errors(cli, tmp_path, fake_log):
    one_line_error(cli("plot", tmp_path / "missing.log.jsonl", "-o", tmp_path / "a.png"), "no such log file")
    one_line_error(cli("plot", fake_log, "-o", tmp_path / "a.gif"), ".png, .svg or .pdf")
    bad = write_log(tmp_path / "bad.log.jsonl", [], tail="{\n")
    one_line_error(cli("plot", bad, "-o", tmp_path / "a.png"), "bad.log.jsonl, line 1:")


def test_cli_missing_matplotlib(cli, fake_log, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    one_line_error(cli("plot", fake_log, "-o", tmp_path / "a.png"), MISSING_MATPLOTLIB)


def test_cli_usage_errors(cli, fake_log):
    one_line_error(cli("plot"), "Missing argument 'LOG...'")
    one_line_error(cli("plot", fake_log, "--x", "minutes"), "'minutes'")


def test_cli_help(cli):
    for flag in ("-h", "--help"):
        res = cli("plot", flag)
        assert res.exit_code == 0
        assert "Examples:" in res.stdout and "charlm plot model.log.jsonl" in res.stdout
        assert "--x [step|tokens|wall|epoch]" in res.stdout
