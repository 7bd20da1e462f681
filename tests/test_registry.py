"""The corpus registry and `charlm corpus list|get`, without network: local folders and file:// URLs.

The copies come from ../shared/corpora when it is there (then the real files are checked against the
registry's real checksums); without it, from stand-ins made of the fixtures in tests/data, with the
registry's sizes and checksums set to theirs for the test, so the same code paths run either way.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from tqdm import tqdm

from charlm import registry
from charlm.cli import main
from charlm.commands.corpus import corpus_group
from charlm.registry import CORPORA
from support import DATA, corpora_dir, invoke, ok, one_line_error

SHAKESPEARE_SHA = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"   # the real input.txt
STAND_INS = {"tinyshakespeare": {"input.txt": "play.txt"},            # registry file -> tests/data file
             "ptb": {"ptb.train.txt": "news.train.txt", "ptb.valid.txt": "news.valid.txt"}}
_test = {}                                                            # this test's monkeypatch and tmp_path
WIKI = {"wikitext-2/wiki.train.tokens": " = Valkyria Chronicles = \n the game began development \n",
        "wikitext-2/wiki.valid.tokens": " = Homarus gammarus = \n a species of lobster \n",
        "wikitext-2/wiki.test.tokens": " = Robert Boulter = \n an English actor \n"}
TEXT8 = " anarchism originated as a term of abuse first used against early working class radicals"


@pytest.fixture(autouse=True)
def setup(monkeypatch, tmp_path):
    monkeypatch.setitem(main.commands, "corpus", corpus_group)
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    _test.update(monkeypatch=monkeypatch, tmp_path=tmp_path)


def shared(name):
    """A folder holding corpus `name`'s files: the real copy, else stand-ins (see the module docstring)."""
    folder = corpora_dir() / name
    if folder.is_dir():
        return folder
    folder = _test["tmp_path"] / "stand-ins" / name
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for fname, fixture in STAND_INS[name].items():
            data = (DATA / fixture).read_bytes()
            (folder / fname).write_bytes(data)
            spec = CORPORA[name]["files"][fname]
            _test["monkeypatch"].setitem(spec, "sha256", hashlib.sha256(data).hexdigest())
            _test["monkeypatch"].setitem(spec, "size", len(data))
    return folder


def expected_sha(name="tinyshakespeare", fname="input.txt"):
    return CORPORA[name]["files"][fname]["sha256"]


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zip_bytes(members, method=zipfile.ZIP_DEFLATED):
    """A zip archive holding {member name: text}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def put(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_registry_entries_are_well_formed():
    for name, e in CORPORA.items():
        assert e["name"] == name and e["level"] in ("char", "word") and e["license"] and e["description"]
        for f in e["files"].values():
            assert f["url"].startswith(("https://", "http://"))
            assert (f["sha256"] is None) == (not f["verified"])       # never a checksum not verified
        assert e["verified"] == all(f["verified"] for f in e["files"].values())
        for fname, f in e["files"].items():                         # unpacked names: distinct, safe
            flat = [m.split("/")[-1] for m in f.get("unpack", [])]
            assert len(set(flat)) == len(flat) and fname not in flat and not {"", ".", ".."} & set(flat)
    assert CORPORA["tinyshakespeare"]["files"]["input.txt"]["sha256"] == SHAKESPEARE_SHA
    assert CORPORA["ptb"]["files"]["ptb.test.txt"]["sha256"] is None
    assert CORPORA["wikitext-2"]["verified"] is False and CORPORA["text8"]["verified"] is False
    assert CORPORA["wikitext-2"]["files"]["wikitext-2-v1.zip"]["unpack"] == list(WIKI)
    assert CORPORA["text8"]["files"]["text8.zip"]["unpack"] == ["text8"]


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
    assert sha(folder / "input.txt") == expected_sha()
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
        one_line_error(r, "sha256 mismatch for input.txt", f"expected {expected_sha()}",
                       f"got {hashlib.sha256(bytes(data)).hexdigest()}", "the download was deleted")
        assert not dest.exists() or list(dest.iterdir()) == []


def test_corrupted_cached_file_is_replaced(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "input.txt").write_text("not shakespeare")
    ok(invoke("corpus", "get", "tinyshakespeare", "--from", shared("tinyshakespeare"), "--dest", dest))
    assert sha(dest / "input.txt") == expected_sha()


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
    assert r.stdout == f"{dest}\n" and sha(dest / "input.txt") == expected_sha()
    assert r.stderr == ""                                      # no bar: stderr is not a terminal
    # A mirror without the unverified test split: warning and skip; a missing verified file: error.
    r = ok(invoke("corpus", "get", "ptb", "--from", shared("ptb").as_uri(), "--dest", tmp_path / "p"))
    assert "ptb.test.txt" in r.stderr
    one_line_error(invoke("corpus", "get", "tinyshakespeare", "--from", (tmp_path / "p").as_uri(),
                          "--dest", tmp_path / "e"), "input.txt is missing from")


def test_api_with_progress_bar(tmp_path, capsys):
    dest = registry.get("tinyshakespeare", source=shared("tinyshakespeare").as_uri(), dest=tmp_path / "d",
                        progress=True)
    assert dest == tmp_path / "d" and sha(dest / "input.txt") == expected_sha()
    err = capsys.readouterr().err
    size = tqdm.format_sizeof(CORPORA["tinyshakespeare"]["files"]["input.txt"]["size"], divisor=1024)
    assert "input.txt:" in err and size in err                # tqdm drew the bar on stderr (1.06M, real)


def test_network_error_is_one_line_naming_the_url(tmp_path):
    url = "http://127.0.0.1:9/mirror"                          # the discard port: connection refused
    one_line_error(invoke("corpus", "get", "tinyshakespeare", "--from", url, "--dest", tmp_path / "d"),
                   "could not download", url + "/input.txt")
    assert not (tmp_path / "d").exists()


def test_get_unpacks_archives_next_to_them(tmp_path):
    src = tmp_path / "src"
    put(src / "wikitext-2-v1.zip", zip_bytes({"wikitext-2/": "", **WIKI}))
    put(src / "text8.zip", zip_bytes({"text8": TEXT8}))
    r = ok(invoke("corpus", "get", "wikitext-2", "--from", src))
    folder = tmp_path / "cache" / "corpora" / "wikitext-2"
    assert r.stdout == f"{folder}\n"
    assert names(folder) == ["wiki.test.tokens", "wiki.train.tokens", "wiki.valid.tokens",
                             "wikitext-2-v1.zip"]
    for member, text in WIKI.items():
        assert (folder / member.split("/")[1]).read_text() == text
    dest = tmp_path / "t"
    r = ok(invoke("corpus", "get", "text8", "--from", src.as_uri(), "--dest", dest))   # the download path
    assert r.stdout == f"{dest}\n" and names(dest) == ["text8", "text8.zip"]
    assert (Path(r.stdout.strip()) / "text8").read_text() == TEXT8
    umask = os.umask(0)
    os.umask(umask)
    assert (dest / "text8").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("member", ["../evil.txt", "text8/../../evil.txt", "{tmp}/evil.txt"])
def test_zip_slip_member_is_refused(tmp_path, monkeypatch, member):
    member = member.format(tmp=tmp_path)
    monkeypatch.setitem(CORPORA["text8"]["files"]["text8.zip"], "unpack", [member])
    src = tmp_path / "src"
    put(src / "text8.zip", zip_bytes({member: "pwned"}))
    dest = tmp_path / "d"
    one_line_error(invoke("corpus", "get", "text8", "--from", src, "--dest", dest),
                   f"refusing to extract {member!r} from text8.zip", "outside")
    assert names(tmp_path) == ["d", "src"] and names(dest) == ["text8.zip"]      # nothing written


def corrupt_wiki_zip(kind):
    if kind == "not a zip":
        return b"<html>404 Not Found</html>\n"
    if kind == "missing member":
        return zip_bytes({m: t for m, t in WIKI.items() if "test" not in m})
    data = bytearray(zip_bytes(WIKI, zipfile.ZIP_STORED))
    if kind == "truncated":
        return bytes(data[:len(data) // 2])
    data[data.index(WIKI["wikitext-2/wiki.test.tokens"].encode())] ^= 1         # the last member's CRC
    return bytes(data)


@pytest.mark.parametrize("kind, problem", [("not a zip", "File is not a zip file"),
                                           ("truncated", "File is not a zip file"),
                                           ("bad crc", "Bad CRC-32 for file 'wikitext-2/wiki.test.tokens'"),
                                           ("missing member", "no member wikitext-2/wiki.test.tokens")])
def test_corrupt_archive_is_one_line_and_leaves_nothing(tmp_path, kind, problem):
    src = tmp_path / "src"
    put(src / "wikitext-2-v1.zip", corrupt_wiki_zip(kind))
    for dest in (tmp_path / "new", tmp_path / "old"):
        if dest.name == "old":                                # a stale member stays as it was
            put(dest / "wiki.train.tokens", b"old")
        one_line_error(invoke("corpus", "get", "wikitext-2", "--from", src, "--dest", dest),
                       "bad zip archive wikitext-2-v1.zip", problem, "the archive was deleted")
    assert not (tmp_path / "new").exists()
    assert names(dest) == ["wiki.train.tokens"] and (dest / "wiki.train.tokens").read_bytes() == b"old"


def test_second_get_does_not_extract_again(tmp_path):
    src = tmp_path / "src"
    put(src / "text8.zip", zip_bytes({"text8": TEXT8}))
    dest = tmp_path / "d"
    member = dest / "text8"
    ok(invoke("corpus", "get", "text8", "--from", src, "--dest", dest))
    before = member.stat().st_mtime_ns
    member.write_text("kept")
    os.utime(member, ns=(before, before))
    ok(invoke("corpus", "get", "text8", "--from", src, "--dest", dest))
    assert member.read_text() == "kept" and member.stat().st_mtime_ns == before
    # Extracted again when the member is older than the archive, or missing.
    archived = (dest / "text8.zip").stat().st_mtime_ns
    os.utime(member, ns=(archived - 10**9, archived - 10**9))
    assert registry.get("text8", source=src, dest=dest) == dest and member.read_text() == TEXT8
    member.unlink()
    assert registry.get("text8", source=src, dest=dest) == dest and member.read_text() == TEXT8
    assert names(dest) == ["text8", "text8.zip"]
