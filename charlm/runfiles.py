"""The files of a training run, kept safe: no input overwritten, one writer per model, a log that belongs
to its model. The engine (charlm.engine) uses these for every task.

A run on `-o OUT` writes OUT (the model), OUT.state (the run state, charlm.resume), the JSON-lines log
(engine.log_path: OUT.log.jsonl, or NAME.log.jsonl for NAME.safetensors), temp files `.NAME.*.tmp`
beside each of them (checkpoint.write_atomic) and the lock file `.NAME.lock`.

- check_inputs(out, inputs): CharlmError if any of those paths is the same file as an input (device and
  inode compared, so a symlink or a hard link to the input is caught as well as the same name).
- RunLock(out): an fcntl.flock lock on `.NAME.lock`, held for the whole run. A second run on the same
  OUT gets a one-line CharlmError naming the first run's pid. The kernel drops the lock when its process
  dies, so a lock file left by a killed run never blocks anyone.
- RunLog(path): the log, written to a temp file until the run's first model save; `publish()` renames
  it over the old log then, so the log beside a model always describes that model's run. Later records
  are appended to the same (renamed) file. The rename replaces a symlink at the log path; it is never
  followed.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import os
import stat
import tempfile

from charlm.errors import CharlmError


def check_out_path(out) -> None:
    """One-line CharlmError for an --out that no save could use: empty, a folder, in a missing or
    unwritable folder. Checked before any work is done."""
    out = os.fspath(out)
    if not out:
        raise CharlmError("--out is empty: give the model file's name")
    if out.endswith((os.sep, "/")) or os.path.basename(out) in (".", ".."):
        raise CharlmError(f"--out {out} names a folder: give a file name, e.g. {os.path.join(out, 'model.safetensors')}")
    if os.path.isdir(out):
        raise CharlmError(f"--out {out} is a directory")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise CharlmError(f"--out {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CharlmError(f"--out {out}: the folder {parent} is not writable")
    if len(os.path.basename(out).encode(errors="surrogateescape")) + len(".log.jsonl") + 16 > 255:
        raise CharlmError(f"--out {out}: the file name is too long for the files saved beside it")


def temp_pattern(path) -> str:
    """The glob of write_atomic's temp files for `path` (`.NAME.*.tmp` in its folder)."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(glob.escape(directory), "." + glob.escape(name) + ".*.tmp")


def lock_path(out) -> str:
    directory, name = os.path.split(os.path.abspath(os.fspath(out)))
    return os.path.join(directory, "." + name + ".lock")


def _identity(path):
    """(device, inode) of the file `path` names, links followed; None if there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_inputs(outputs, inputs) -> None:
    """CharlmError naming both paths if an output path (or a temp file of one) is the same file as an input."""
    ids = {}
    for p in inputs:
        if p is None or p == "-":
            continue
        key = _identity(p)
        if key is not None:
            ids.setdefault(key, p)
    if not ids:
        return
    for out, what in outputs:
        for candidate in [out, *glob.glob(temp_pattern(out))]:
            for probe in (_identity(candidate), _link_identity(candidate)):
                if probe in ids:
                    raise CharlmError(f"{what} {out} would overwrite the input {ids[probe]} (the same file): "
                                      f"choose another -o/--out")


def _link_identity(path):
    """(device, inode) of `path` itself when it is a symlink (a hard link to an input's symlink)."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISLNK(st.st_mode) else None


class RunLock:
    """One writer per model: an exclusive flock on `.NAME.lock` beside `out`, held until release()."""

    def __init__(self, out):
        self.out = os.fspath(out)
        self.path = lock_path(out)
        self.fd = None

    def acquire(self) -> "RunLock":
        for _ in range(100):                      # the file can be removed between open and lock: retry
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise CharlmError(f"cannot create the lock file {self.path} for {self.out}: "
                                  f"{e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read_pid(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise CharlmError(f"cannot lock {self.path}: {e.strerror or e}") from None
                who = f"pid {holder}" if holder else "another process"
                raise CharlmError(f"{self.out} is in use: another charlm run ({who}) is writing it; wait for it "
                                  f"to end or choose another -o") from None
            if _identity(self.path) == tuple(os.fstat(fd)[i] for i in (stat.ST_DEV, stat.ST_INO)):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return self
            os.close(fd)                          # locked a file its holder just removed: take the new one
        raise CharlmError(f"cannot lock {self.path}: it keeps changing")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)                  # while still locked: nobody holds a lock on a removed file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_pid(fd) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RunLog:
    """The JSON-lines log of a run at `path`: first in a temp file beside it, renamed over `path` by
    publish() (at the run's first model save), then appended to in place."""

    def __init__(self, path, initial: str = ""):
        self.path = os.fspath(path)
        directory, name = os.path.split(os.path.abspath(self.path))
        fd, self.tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        self.published = False
        if initial:
            self.write(initial)

    def write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()

    def publish(self) -> None:
        """Make this log the one at `path` (rename: a symlink there is replaced, never followed)."""
        if self.published:
            return
        try:                                  # not fsynced: the log is appended to unsynced anyway
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise CharlmError(f"could not save the training log to {self.path}: {e.strerror or e}") from e
        self.published = True

    def close(self) -> None:
        """Close; a log never published (no model saved by this run) is removed: the old one stays."""
        self.file.close()
        if not self.published:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


def read_own_log(path) -> list[str]:
    """The lines of the log at `path`, or [] when there is none or it is not a regular file (a symlink
    is not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return []
        return f.read().decode("utf-8", "replace").splitlines(keepends=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
