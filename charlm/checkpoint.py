"""Model files: save and strictly load the one-file safetensors format "charlm/1".

The format is docs/model-format.md. A file is safetensors: an 8-byte little-endian header
length N, N bytes of JSON header (tensor entries plus a `__metadata__` object of strings), then the
raw tensor bytes. charlm writes float32 tensors named by `ModelConfig.param_shapes()` and the metadata
keys `format`, `config`, `vocab`, plus any extra string keys (training history, versions).

Saving is atomic and durable (`write_atomic`): a reader sees the old file or the new one, never half
of one, and a full disk leaves the old file as it was. Nothing non-finite is ever written.

Loading is strict: every way a file can be wrong (missing, truncated, not safetensors, a PyTorch
pickle, another format version, inconsistent config/vocabulary/tensors, NaN weights) raises
`ModelFileError(path, problem)` and nothing else. Metadata is data only: it is parsed as JSON and
never imported, evaluated or called.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import struct
import tempfile
from dataclasses import dataclass, field

import numpy as np
import safetensors
import safetensors.numpy

from charlm.config import FORMAT, TASK_CONFIGS, ConditionalConfig, ModelConfig
from charlm.errors import CharlmError, ModelFileError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a larger length field is damage, not a header
RESERVED_KEYS = ("format", "config", "vocab")  # metadata keys charlm owns; the rest is free-form


@dataclass(frozen=True)
class LoadedModel:
    config: ModelConfig                                   # architecture, vocab_size from the vocabulary
    vocab: list[str]                                      # token strings; index = token id
    params: dict[str, np.ndarray] = field(repr=False)     # float32, C-contiguous, writable copies
    meta: dict[str, str] = field(default_factory=dict)    # extra metadata (not format/config/vocab)


# ----------------------------------------------------------------------------------------- saving

def save_model(path, params: dict[str, np.ndarray], config: ModelConfig, vocab_tokens: list[str],
               meta: dict[str, str] | None = None) -> None:
    """Write a charlm/1 model file at `path`, atomically. Raises CharlmError on bad input or I/O failure."""
    tensors = _checked_tensors(params, config)
    _check_vocab_for_save(vocab_tokens, config)
    metadata = {"format": FORMAT, "config": config.to_json(),
                "vocab": json.dumps(list(vocab_tokens), ensure_ascii=False)}
    for key, value in (meta or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise CharlmError(f"model metadata must map strings to strings, got {key!r}: {type(value).__name__}")
        if key in RESERVED_KEYS:
            raise CharlmError(f"model metadata key {key!r} is reserved for charlm")
        if not _utf8_ok(key) or not _utf8_ok(value):
            raise CharlmError(f"model metadata {key!r} is not encodable as UTF-8")
        metadata[key] = value
    try:
        data = safetensors.numpy.save(tensors, metadata=metadata)
    except Exception as e:  # safetensors' own error types; should not happen after the checks above
        raise CharlmError(f"could not serialize model for {path}: {e}") from e
    write_atomic(path, data, what="model")


def _checked_tensors(params, config: ModelConfig) -> dict[str, np.ndarray]:
    """params as float32 C-contiguous arrays in param_shapes() order, or CharlmError."""
    shapes = config.param_shapes()
    if not isinstance(params, dict):
        raise CharlmError(f"params must be a dict of arrays, got {type(params).__name__}")
    missing = [n for n in shapes if n not in params]
    unexpected = [n for n in params if n not in shapes]
    if missing or unexpected:
        raise CharlmError(f"cannot save model: parameters do not match the config "
                          f"({_name_diff(missing, unexpected)})")
    tensors = {}
    for name, shape in shapes.items():
        try:
            with np.errstate(over="ignore"):  # an overflow becomes inf, refused just below
                a = np.ascontiguousarray(params[name], dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise CharlmError(f"cannot save model: parameter {name} is not numeric: {e}") from e
        if a.shape != shape:
            raise CharlmError(f"cannot save model: parameter {name} has shape {list(a.shape)}, "
                              f"expected {list(shape)}")
        if not np.isfinite(a).all():  # checked after the float32 cast: 1e39 becomes inf there
            raise CharlmError(f"refusing to save model: parameter {name} holds non-finite values (NaN or inf)")
        tensors[name] = a
    return tensors


def _check_vocab_for_save(vocab_tokens, config: ModelConfig) -> None:
    problem = _vocab_problem(vocab_tokens)
    if problem is None and len(vocab_tokens) != config.vocab_size:
        problem = f"it has {len(vocab_tokens)} tokens but the config says vocab_size {config.vocab_size}"
    if problem is None:
        problem = _specials_problem(vocab_tokens, config)
    if problem is None:
        bad = next((t for t in vocab_tokens if not _utf8_ok(t)), None)
        if bad is not None:
            problem = f"token {bad!r} is not encodable as UTF-8"
    if problem is not None:
        raise CharlmError(f"cannot save model: bad vocabulary: {problem}")


def write_atomic(path, data: bytes, *, what: str = "file") -> None:
    """Replace `path` with `data` atomically and durably.

    Temp file in the same directory -> write, flush, fsync -> os.replace -> fsync the directory. On an
    OSError before the replace (full disk, permissions, missing directory) the temp file is removed,
    the previous file is untouched, and CharlmError is raised. `what` names the content in messages.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _copy_permissions(f.fileno(), path)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise CharlmError(f"could not save {what} to {path}: {e.strerror or e}; "
                          f"the previous file there is unchanged") from e
    finally:
        if tmp is not None:  # also on KeyboardInterrupt: never leave a stray temp file
            try:
                os.unlink(tmp)
            except OSError:
                pass
    try:
        _fsync_directory(directory)
    except OSError as e:
        raise CharlmError(f"saved {what} to {path} but could not sync its directory: {e.strerror or e}; "
                          f"the new file may not survive a power failure") from e


def _copy_permissions(fd: int, path: str) -> None:
    """mkstemp creates mode 0600; give the new file the old file's mode, or the umask default."""
    if not hasattr(os, "fchmod"):  # Windows
        return
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.fchmod(fd, mode)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable. Skipped where directories cannot be opened or synced (Windows, some FS)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------------------- loading

def load_model(path, task: str = "lm") -> LoadedModel:
    """Read and fully validate a charlm/1 model file of `task` ("lm", "classify"; metadata `task`,
    absent = "lm"). Every failure raises ModelFileError(path, problem), a model of another task too.
    The header (size, JSON, tensor offsets) is checked against the file size before the tensors are read."""
    data, header = read_checked(path)
    metadata = _check_metadata(path, header)
    try:
        # Structure (offsets, sizes, coverage) is safetensors' job; we only look at the result.
        # BaseException: a Rust panic surfaces as pyo3's PanicException, which is not an Exception.
        flat = safetensors.deserialize(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise ModelFileError(path, f"damaged safetensors data: {one_line(e)}") from None
    del data
    check_task(path, metadata, task)
    conditional = task == "lm" and "conditional" in metadata          # a language model conditioned on labels
    config, vocab = check_config_and_vocab(path, metadata, ConditionalConfig if conditional else TASK_CONFIGS[task])
    params = _check_tensors(path, config, flat)
    meta = {k: v for k, v in metadata.items() if k not in RESERVED_KEYS}
    return LoadedModel(config=config, vocab=vocab, params=params, meta=meta)


def read_checked(path) -> tuple[bytes, dict]:
    """(the whole file, its header): a regular file only, its header parsed and its tensor offsets checked
    against the file size before the tensor data is read (a 2 GB file with a bad header costs nothing)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(path, "is a directory, not a model file" if stat.S_ISDIR(st.st_mode)
                                 else "not a regular file (a device, FIFO or socket)")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            parts = [prefix]

            def read(n):
                parts.append(f.read(n))
                return parts[-1]
            header = parse_header(path, prefix, size, read)
            _check_offsets(path, header, size - 8 - len(parts[1]))
            parts.append(f.read())
    except OSError as e:
        raise ModelFileError(path, os_problem(e)) from None
    except (TypeError, ValueError) as e:  # e.g. a path with a NUL byte
        raise ModelFileError(path, f"cannot open: {e}") from None
    data = b"".join(parts)
    if len(data) != size:
        raise ModelFileError(path, "file changed or was truncated while reading")
    return data, header


def _check_offsets(path, header: dict, data_bytes: int) -> None:
    """Every tensor entry's data_offsets within the `data_bytes` that follow the header, and together
    covering them (as safetensors requires)."""
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise ModelFileError(path, f"damaged safetensors data: tensor {str(name)[:80]!r} has data offsets {str(offsets)[:80]} outside the "
                                       f"{data_bytes} data bytes of the file (truncated or damaged)")
        end = max(end, offsets[1])
    if end != data_bytes:
        raise ModelFileError(path, f"damaged safetensors data: the tensors cover {end} of the {data_bytes} "
                                   f"data bytes")


def read_metadata(path) -> dict[str, str]:
    """Only the header metadata (all keys, `format` checked), without reading the tensor data."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(path, "is a directory, not a model file" if stat.S_ISDIR(st.st_mode)
                                 else "not a regular file (a device, FIFO or socket)")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            header = parse_header(path, prefix, size, f.read)
    except OSError as e:
        raise ModelFileError(path, os_problem(e)) from None
    except (TypeError, ValueError) as e:
        raise ModelFileError(path, f"cannot open: {e}") from None
    metadata = _check_metadata(path, header)
    try:  # safetensors checks the tensor entries against the file size without reading the data
        with safetensors.safe_open(path, framework="numpy") as f:
            f.keys()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise ModelFileError(path, f"damaged safetensors data: {one_line(e)}") from None
    return metadata


def parse_header(path, prefix: bytes, size: int, read) -> dict:
    """The header JSON object. `read(n)` returns the n header bytes that follow the 8-byte prefix."""
    # A valid header length can start with the same bytes as a pickle (640 = b"\x80\x02..."), so the
    # PyTorch diagnosis is made only once the bytes fail to be a safetensors header.
    torch_like = prefix.startswith(b"PK\x03\x04") or (
        len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5)
    torch_problem = ("looks like a PyTorch pickle/zip file (.pt/.bin), charlm only reads safetensors "
                     "and never unpickles")
    if size < 8:
        raise ModelFileError(path, torch_problem if torch_like else
                             f"file is only {size} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise ModelFileError(path, torch_problem if torch_like else
                             f"header length field says {n} bytes but the file has {size - 8} bytes "
                             f"after it (truncated, or not a safetensors file)")
    if n == 0:
        raise ModelFileError(path, "header is empty (not a safetensors file)")
    raw = read(n)
    if len(raw) != n:
        raise ModelFileError(path, "file changed or was truncated while reading the header")
    if torch_like and not raw.startswith(b"{"):
        raise ModelFileError(path, torch_problem)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ModelFileError(path, f"header is not valid JSON (damaged or not a safetensors file): "
                                   f"{one_line(e)}") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "header is not a JSON object (not a safetensors file)")
    return header


def _check_metadata(path, header: dict) -> dict[str, str]:
    metadata = header.get("__metadata__")
    if metadata is None:
        raise ModelFileError(path, "no metadata in the header (a safetensors file, but not a charlm model)")
    if not isinstance(metadata, dict):
        raise ModelFileError(path, "header __metadata__ is not a JSON object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise ModelFileError(path, f"metadata value of {key!r} is not a string")
    if "format" not in metadata:
        raise ModelFileError(path, f"metadata has no 'format' key (expected {FORMAT!r})")
    if metadata["format"] != FORMAT:
        raise ModelFileError(path, f"unknown format version {metadata['format']!r}, this charlm reads {FORMAT!r}")
    return metadata


TASK_COMMANDS = {"lm": "charlm sample/score/perplexity", "classify": "charlm classify", "tag": "charlm tag",
                 "seq2seq": "charlm seq2seq"}


def file_task(metadata: dict[str, str]) -> str:
    return metadata.get("task", "lm")


def check_task(path, metadata: dict[str, str], expected: str) -> None:
    """ModelFileError unless the file holds a model of the `expected` task."""
    task = file_task(metadata)
    if task == expected:
        return
    names = {"lm": "language model", "classify": "classifier", "tag": "tagger",
             "seq2seq": "sequence-to-sequence model"}
    if task not in names:
        raise ModelFileError(path, f"unknown task {task!r} in the metadata (this charlm reads {', '.join(names)})")
    raise ModelFileError(path, f"holds a {names[task]}, not a {names[expected]}: use {TASK_COMMANDS[task]} with it")


def check_config_and_vocab(path, metadata: dict[str, str], config_class=ModelConfig) -> tuple[ModelConfig, list[str]]:
    for key in ("config", "vocab"):
        if key not in metadata:
            raise ModelFileError(path, f"metadata has no {key!r} key")
    try:
        vocab = json.loads(metadata["vocab"])
    except (ValueError, RecursionError) as e:
        raise ModelFileError(path, f"vocab metadata is not valid JSON: {one_line(e)}") from None
    problem = _vocab_problem(vocab)
    if problem is not None:
        raise ModelFileError(path, f"bad vocab metadata: {problem}")
    try:  # a vocab_size of another JSON type ("21") would read as "config says 21 but vocabulary has 21"
        size = json.loads(metadata["config"]).get("vocab_size", 0)
        if type(size) is not int:
            raise ModelFileError(path, f"bad config metadata: vocab_size must be an integer, got {json.dumps(size)}")
    except (ValueError, RecursionError, AttributeError):
        pass  # not a JSON object: from_json says so just below
    try:
        config = config_class.from_json(metadata["config"], vocab_size=len(vocab))
    except CharlmError as e:
        raise ModelFileError(path, f"bad config metadata: {e}") from None
    except (ValueError, RecursionError) as e:
        raise ModelFileError(path, f"config metadata is not valid JSON: {one_line(e)}") from None
    except Exception as e:  # a value of a strange JSON type that the dataclass checks trip over
        raise ModelFileError(path, f"bad config metadata: {one_line(e)}") from None
    problem = _specials_problem(vocab, config)
    if problem is not None:
        raise ModelFileError(path, f"bad vocab metadata: {problem}")
    return config, vocab


def _check_tensors(path, config: ModelConfig, flat) -> dict[str, np.ndarray]:
    entries = {name: view for name, view in flat}
    # A damaged config can ask for 10**9 layers: count before listing names.
    expected_count = config.tensor_count()
    if expected_count > len(entries) + 1000:
        raise ModelFileError(path, f"config asks for {expected_count} tensors ({config.describe()}) "
                                   f"but the file holds {len(entries)}")
    shapes = config.param_shapes()
    missing = [n for n in shapes if n not in entries]
    unexpected = [n for n in entries if n not in shapes]
    if missing or unexpected:
        raise ModelFileError(path, f"tensors do not match the config {config.describe()}: "
                                   f"{_name_diff(missing, unexpected)}")
    params = {}
    for name, shape in shapes.items():
        view = entries[name]
        if view["dtype"] != "F32":
            raise ModelFileError(path, f"tensor {name} has dtype {view['dtype']}, expected F32 (float32)")
        if tuple(view["shape"]) != shape:
            raise ModelFileError(path, f"tensor {name} has shape {list(view['shape'])}, expected {list(shape)}")
        a = np.frombuffer(view["data"], dtype="<f4").reshape(shape).astype(np.float32, order="C", copy=True)
        if not np.isfinite(a).all():
            raise ModelFileError(path, f"tensor {name} holds non-finite values (NaN or inf)")
        params[name] = a
    return params


# ---------------------------------------------------------------------------------------- helpers

def _vocab_problem(vocab) -> str | None:
    if not isinstance(vocab, list):
        return f"expected a list of token strings, got {type(vocab).__name__}"
    seen = set()
    for i, token in enumerate(vocab):
        if not isinstance(token, str):
            return f"token {i} is not a string: {token!r}"
        if token in seen:
            return f"token {token!r} appears twice"
        if not _utf8_ok(token):
            return f"token {i} is not valid Unicode text (it holds a lone surrogate: {ascii(token)})"
        seen.add(token)
    if len(vocab) < 2:
        return f"it has {len(vocab)} tokens, needs at least <unk> and <eos>"
    return None


def _specials_problem(vocab: list[str], config: ModelConfig) -> str | None:
    for name, i, want in (("unk_id", config.unk_id, "<unk>"), ("eos_id", config.eos_id, "<eos>")):
        if not (0 <= i < len(vocab)) or vocab[i] != want:
            got = vocab[i] if 0 <= i < len(vocab) else "nothing"
            return f"{name} is {i} but token {i} is {got!r}, not {want!r}"
    return None


def _name_diff(missing: list[str], unexpected: list[str], limit: int = 8) -> str:
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected)):
        if names:
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
            parts.append(f"{label} {shown}")
    return "; ".join(parts)


def os_problem(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not a model file"
    if isinstance(e, PermissionError):
        return "permission denied"
    return f"cannot read: {e.strerror or e}"


def _utf8_ok(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] or type(e).__name__
