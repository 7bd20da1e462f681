"""`charlm ... | head`: a reader that leaves early ends charlm quietly: no traceback or error on stderr.

The reader here (`true`) exits without reading, long before charlm writes, so every write meets the
closed pipe: exit code 141 (128 + SIGPIPE).
"""
import subprocess
import sys

from support import invoke, ok, shakespeare


def test_closed_stdout_is_quiet(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare(8000), encoding="utf-8")
    model = tmp_path / "model.safetensors"
    ok(invoke("train", corpus, "--hidden", 16, "--layers", 1, "--batch-size", 4, "--seq-len", 16,
              "--max-steps", 3, "-o", model, "-q"))
    for command in ("sample --length 200000 --seed 1", "info"):
        cmd = f"{sys.executable} -m charlm {command} -m {model} | true; exit ${{PIPESTATUS[0]}}"
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
        assert r.returncode == 141, (command, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and "error" not in r.stderr, (command, r.stderr)
