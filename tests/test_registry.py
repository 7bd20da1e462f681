"""The corpus registry and `charlm corpus list|get`, without network: local folders and file:// URLs."""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from charlm import registry
from charlm.cli import main
from charlm.registry import CORPORA, corpus_group
from support import corpora_dir, invoke, ok, one_line_error

SHAKESPEARE_SHA = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@pytest.fixture(autouse=True)
def setup(monkeypatch, tmp_path):
    monkeypatch.setitem(main.commands, "corpus", corpus_group)
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))


def shared(name):
    folder = corpora_dir() / name
    if not folder.is_dir():
        pytest.skip(f"shared corpus {folder} is absent")
    return folder


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_entries_are_well_formed():
    for name, e in CORPORA.items():
        assert e["name"] == name and e["level"] in ("char", "word") and e["license"] and e["description"]
        for f in e["files"].values():
            assert f["url"].startswith(("https://", "http://"))
            assert (f["sha256"] is None) == (not f["verified"])       # never a checksum not verified
        assert e["verified"] == all(f["verified"] for f in e["files"].values())
    assert CORPORA["tinyshakespeare"]["files"]["input.txt"]["sha256"] == SHAKESPEARE_SHA
    assert CORPORA["ptb"]["files"]["ptb.test.txt"]["sha256"] is None
    assert CORPORA["wikitext-2"]["verified"] is False and CORPORA["text8"]["verified"] is False


def test_list_text_and_json(tmp_path):
    lines = ok(invoke("corpus", "list")).stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["tinyshakespeare", "ptb", "wikitext-2", "text8"]
    assert "1.1 MB" in lines[0] and "not cached" in lines[0] and "unverified" in lines[2]
    rows = json.loads(ok(invoke("corpus", "list", "--json")).stdout)
    assert {r["name"] for r in rows} == set(CORPORA)
    shakespeare = next(r for r in rows if r["name"] == "tinyshakespeare")
    assert shakespeare["total_size"] == 1_115_394 and shakespeare["cached"] is False
    assert shakespeare["path"] == str(tmp_path / "cache" / "corpora" / "tinyshakespeare")


def test_get_tinyshakespeare_into_cache_then_listed_as_cached(tmp_path):
    r = ok(invoke("corpus", "get", "tinyshakespeare", "--from", shared("tinyshakespeare")))
    folder = tmp_path / "cache" / "corpora" / "tinyshakespeare"
    assert r.stdout == f"{folder}\n"
    assert sha(folder / "input.txt") == SHAKESPEARE_SHA
    assert [p.name for p in folder.iterdir()] == ["input.txt"]                   # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "input.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    rows = json.loads(ok(invoke("corpus", "list", "--json")).stdout)
    assert next(r for r in rows if r["name"] == "tinyshakespeare")["cached"] is True
    assert "[cached]" in ok(invoke("corpus", "list")).stdout.splitlines()[0]


def test_second_get_does_not_copy_again(tmp_path):
    src = shared("tinyshakespeare")
    dest = tmp_path / "d"
    ok(invoke("corpus", "get", "tinyshakespeare", "--from", src, "--dest", dest))
    before = (dest / "input.txt").stat().st_mtime_ns
    os.utime(dest / "input.txt", ns=(before - 10**9, before - 10**9))
    r = ok(invoke("corpus", "get", "tinyshakespeare", "--from", src, "--dest", dest))
    assert r.stdout == f"{dest}\n"
    assert (dest / "input.txt").stat().st_mtime_ns == before - 10**9


def test_get_ptb_skips_the_unverified_test_split(tmp_path):
    dest = tmp_path / "ptb"
    r = ok(invoke("corpus", "get", "ptb", "--from", shared("ptb"), "--dest", dest))
    assert r.stdout == f"{dest}\n"
    assert "warning" in r.stderr and "ptb.test.txt" in r.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["ptb.train.txt", "ptb.valid.txt"]
    for name in ("ptb.train.txt", "ptb.valid.txt"):
        assert sha(dest / name) == CORPORA["ptb"]["files"][name]["sha256"]


def test_get_ptb_missing_verified_file_is_an_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(shared("ptb") / "ptb.valid.txt", src)
    one_line_error(invoke("corpus", "get", "ptb", "--from", src, "--dest", tmp_path / "d"),
                   "ptb.train.txt is missing from", str(src))


def test_corrupted_copy_is_deleted(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    data = bytearray((shared("tinyshakespeare") / "input.txt").read_bytes())
    data[1000] ^= 1
    (src / "input.txt").write_bytes(bytes(data))
    dest = tmp_path / "d"
    for source in (src, src.as_uri()):                # the copy and the download path
        r = invoke("corpus", "get", "tinyshakespeare", "--from", source, "--dest", dest)
        one_line_error(r, "sha256 mismatch for input.txt", f"expected {SHAKESPEARE_SHA}",
                       f"got {hashlib.sha256(bytes(data)).hexdigest()}", "the download was deleted")
        assert not dest.exists() or list(dest.iterdir()) == []


def test_corrupted_cached_file_is_replaced(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "input.txt").write_text("not shakespeare")
    ok(invoke("corpus", "get", "tinyshakespeare", "--from", shared("tinyshakespeare"), "--dest", dest))
    assert sha(dest / "input.txt") == SHAKESPEARE_SHA


def test_unknown_corpus_and_missing_from_dir(tmp_path):
    one_line_error(invoke("corpus", "get", "nope"), "unknown corpus 'nope'", "tinyshakespeare")
    missing = tmp_path / "missing"
    one_line_error(invoke("corpus", "get", "tinyshakespeare", "--from", missing), str(missing),
                   "no such directory")
    assert not (tmp_path / "cache").exists()


def test_file_url_mirror_goes_through_the_download_path(tmp_path):
    src = shared("tinyshakespeare")
    dest = tmp_path / "d"
    r = ok(invoke("corpus", "get", "tinyshakespeare", "--from", src.as_uri() + "/", "--dest", dest))
    assert r.stdout == f"{dest}\n" and sha(dest / "input.txt") == SHAKESPEARE_SHA
    assert r.stderr == ""                                      # no bar: stderr is not a terminal
    # A mirror without the unverified test split: warning and skip; a missing verified file: error.
    r = ok(invoke("corpus", "get", "ptb", "--from", shared("ptb").as_uri(), "--dest", tmp_path / "p"))
    assert "ptb.test.txt" in r.stderr
    one_line_error(invoke("corpus", "get", "tinyshakespeare", "--from", (tmp_path / "p").as_uri(),
                          "--dest", tmp_path / "e"), "input.txt is missing from")


def test_api_with_progress_bar(tmp_path, capsys):
    dest = registry.get("tinyshakespeare", source=shared("tinyshakespeare").as_uri(), dest=tmp_path / "d",
                        progress=True)
    assert dest == tmp_path / "d" and sha(dest / "input.txt") == SHAKESPEARE_SHA
    err = capsys.readouterr().err
    assert "input.txt:" in err and "1.06M" in err              # tqdm drew the bar on stderr


def test_network_error_is_one_line_naming_the_url(tmp_path):
    url = "http://127.0.0.1:9/mirror"                          # the discard port: connection refused
    one_line_error(invoke("corpus", "get", "tinyshakespeare", "--from", url, "--dest", tmp_path / "d"),
                   "could not download", url + "/input.txt")
    assert not (tmp_path / "d").exists()
