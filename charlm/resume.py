"""The run state: everything a training run needs to continue exactly where it stopped.

`charlm train -o OUT` keeps its run state in `OUT.state` beside the model (`model.safetensors.state`).
It is a safetensors file (format "charlm-state/1"), written atomically like a model file, and loaded
as strictly: only safetensors, data-only JSON metadata, every failure a `StateFileError` naming the
file and the problem. No pickle.

The engine (charlm.engine) writes it for every task; the task owns its model metadata and the
tensors it carries between batches (`Task` in charlm.engine), the rest is the engine's.

Tensors (float32):
    param/<name>     the latest parameters (names and shapes of the model file, docs/model-format.md)
    opt/<key>        optimizer moments: adam m.<name> and v.<name>; sgd u.<name>
    <name>           the task's carried tensors; the language model's: carry (L, 2, B, H), the hidden
                     state carried into the next window (h, then c)
Metadata (strings):
    format           "charlm-state/1"
    task             the task kind ("lm"; absent in files of older versions, which are all "lm")
    config, vocab    the task's model metadata, as in its model file
    train_config     JSON of the task's training config (the run's hyperparameters)
    run_config       JSON of how the run was started: the corpus files and how they were read (level,
                     lowercase, vocabulary limits, validation text, encoding errors), so `--resume`
                     rebuilds the same token ids, and the run options outside TrainConfig
                     (checkpoint_every, on_nonfinite)
    corpus_sha256    JSON {"train": hex, "valid": hex}: sha256 of the int32 id streams; a resume
                     on a corpus that encodes differently is an error
    progress         JSON: step, epoch, epoch_pos (the batch source's position in the epoch), tokens,
                     elapsed, best/best_step (what --out keeps: the value of the task's deciding metric),
                     sched_best/bad_valids (the learning-rate decay schedule), recent losses,
                     skipped steps, optimizer name and scalars (t, lr), threads, run_id, stopped_by
    rng              JSON of numpy's PCG64 bit_generator.state, every integer a decimal string
                     (the 128-bit state does not fit a JSON number that every reader keeps exact)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import safetensors
import safetensors.numpy

from charlm import __version__
from charlm import checkpoint
from charlm.config import CHANGEABLE, FIXED, LIMIT
from charlm.errors import CharlmError, ModelFileError

STATE_FORMAT = "charlm-state/1"
OPTIMIZER_KEYS = {"adam": ("m", "v"), "sgd": ("u",)}


class StateFileError(CharlmError):
    """A run-state file that cannot be used to resume: missing, damaged, or not a charlm run state."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: not a usable charlm run state: {problem}")
        self.path = path
        self.problem = problem


def state_path(out) -> str:
    """Where the run state of the model at `out` lives."""
    return os.fspath(out) + ".state"


@dataclass
class RunState:
    config: object                          # the task's model config (ModelConfig for the LM)
    vocab: object                           # the task's token tables (the LM: its token strings)
    train_config: dict                      # the task's training config as a dict (asdict)
    run_config: dict                        # how the run was started (free-form JSON object)
    corpus_sha256: dict                     # {"train": hex, "valid": hex}
    params: dict = field(repr=False)        # name -> float32 array, the latest parameters
    opt_arrays: dict = field(repr=False)    # optimizer moments, keys as Optimizer.state_arrays()
    tensors: dict = field(repr=False, default_factory=dict)   # the task's carried tensors, float32
    rng_state: dict = field(default_factory=dict)   # numpy bit_generator.state (ints as ints)
    progress: dict = field(default_factory=dict)    # see the module docstring
    task: str = "lm"                        # the task kind (charlm.tasks)

    @property
    def step(self) -> int:
        return self.progress["step"]

    @property
    def carry(self) -> np.ndarray:
        """The language model's carried hidden state (L, 2, B, H)."""
        return self.tensors["carry"]


def ids_digest(ids: np.ndarray) -> str:
    """sha256 of a token-id stream as little-endian int32."""
    a = np.ascontiguousarray(ids, dtype="<i4")
    return hashlib.sha256(a.data).hexdigest()


# ------------------------------------------------------------------------------------- rng state

def rng_state_to_json(state: dict) -> str:
    """numpy's PCG64 `bit_generator.state` as JSON, every integer a decimal string."""
    if state.get("bit_generator") != "PCG64":
        raise CharlmError(f"cannot save the random generator {state.get('bit_generator')!r}, only PCG64")
    inner = state["state"]
    return json.dumps({"bit_generator": "PCG64",
                       "state": {"state": str(int(inner["state"])), "inc": str(int(inner["inc"]))},
                       "has_uint32": str(int(state["has_uint32"])), "uinteger": str(int(state["uinteger"]))},
                      sort_keys=True)


def rng_state_from_json(text: str) -> dict:
    """The inverse of `rng_state_to_json`, checked by numpy itself; ValueError on anything else."""
    d = json.loads(text)
    if not isinstance(d, dict) or d.get("bit_generator") != "PCG64" or not isinstance(d.get("state"), dict):
        raise ValueError("not a PCG64 generator state")

    def num(v, bits):
        if not (isinstance(v, str) and v.isdigit() and len(v) <= 40):
            raise ValueError(f"expected a decimal integer string, got {v!r}")
        n = int(v)
        if n >= 1 << bits:
            raise ValueError(f"{n} does not fit in {bits} bits")
        return n

    state = {"bit_generator": "PCG64",
             "state": {"state": num(d["state"].get("state"), 128), "inc": num(d["state"].get("inc"), 128)},
             "has_uint32": num(d.get("has_uint32"), 1), "uinteger": num(d.get("uinteger"), 32)}
    np.random.default_rng().bit_generator.state = state      # numpy's own check (e.g. inc must be odd)
    return state


def make_rng(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


# ------------------------------------------------------------------------------------------ save

def save_state(path, st: RunState) -> None:
    """Write the run state atomically. Refuses non-finite tensors (CharlmError naming the tensor)."""
    from charlm.tasks import task_class
    tensors = {}
    for prefix, arrays in (("param/", st.params), ("opt/", st.opt_arrays), ("", st.tensors)):
        for name, a in arrays.items():
            a = np.ascontiguousarray(a, dtype=np.float32)
            if not np.isfinite(a).all():
                raise CharlmError(f"refusing to save the run state: {prefix}{name} holds non-finite values "
                                  f"(NaN or inf)")
            tensors[prefix + name] = a
    progress = dict(st.progress)
    for key in ("best", "sched_best"):                       # inf (nothing validated yet) is JSON null
        if progress.get(key) is not None and not math.isfinite(progress[key]):
            progress[key] = None
    metadata = {
        "format": STATE_FORMAT,
        "charlm_version": __version__,
        "task": st.task,
        **task_class(st.task).model_metadata(st.config, st.vocab),
        "train_config": json.dumps(st.train_config, sort_keys=True),
        "run_config": json.dumps(st.run_config, sort_keys=True, ensure_ascii=False),
        "corpus_sha256": json.dumps(st.corpus_sha256, sort_keys=True),
        "progress": json.dumps(progress, sort_keys=True, allow_nan=False),
        "rng": rng_state_to_json(st.rng_state),
    }
    try:
        data = safetensors.numpy.save(tensors, metadata=metadata)
    except Exception as e:
        raise CharlmError(f"could not serialize the run state for {path}: {e}") from e
    checkpoint.write_atomic(path, data, what="run state")


# ------------------------------------------------------------------------------------------ load

_PROGRESS_INTS = ("step", "epoch", "epoch_pos", "tokens", "best_step", "bad_valids", "skipped", "skips_in_row",
                  "threads")
_PROGRESS_FLOATS = ("elapsed",)
_PROGRESS_OPT_FLOATS = ("best", "sched_best")          # null = +inf (nothing validated yet)


def load_state(path) -> RunState:
    """Read and fully validate a run-state file. Every failure raises StateFileError(path, problem)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise StateFileError(path, "no such file") from None
    except OSError as e:
        raise StateFileError(path, checkpoint.os_problem(e)) from None
    except (TypeError, ValueError) as e:
        raise StateFileError(path, f"cannot open: {e}") from None
    try:
        header = checkpoint.parse_header(path, data[:8], len(data), lambda n: data[8:8 + n])
    except ModelFileError as e:
        raise StateFileError(path, e.problem) from None
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise StateFileError(path, "no string metadata in the header (not a charlm run state)")
    if meta.get("format") != STATE_FORMAT:
        what = "a charlm model file, not its run state" if meta.get("format") == "charlm/1" else \
            f"format {meta.get('format')!r}"
        raise StateFileError(path, f"{what} (expected {STATE_FORMAT!r})")
    try:
        flat = safetensors.deserialize(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:        # pyo3's PanicException is not an Exception
        raise StateFileError(path, f"damaged safetensors data: {checkpoint.one_line(e)}") from None
    from charlm.tasks import known, task_class
    kind = meta.get("task", "lm")
    if kind not in known():
        raise StateFileError(path, f"unknown task {kind!r} (this charlm knows {', '.join(known())})")
    task = task_class(kind)
    try:
        config, vocab = task.read_model_metadata(path, meta)
    except ModelFileError as e:
        raise StateFileError(path, e.problem) from None
    try:
        train_config = _json_object(meta, "train_config")
        task.train_config_class(**train_config)
    except (ValueError, TypeError, CharlmError) as e:
        raise StateFileError(path, f"bad train_config metadata: {checkpoint.one_line(e)}") from None
    try:
        run_config = _json_object(meta, "run_config")
        digests = _json_object(meta, "corpus_sha256")
        if not all(isinstance(digests.get(k), str) for k in ("train", "valid")):
            raise ValueError("needs train and valid hex digests")
        progress = _progress(_json_object(meta, "progress"))
        rng_state = rng_state_from_json(_required(meta, "rng"))
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise StateFileError(path, f"bad metadata: {checkpoint.one_line(e)}") from None
    entries = {name: view for name, view in flat}
    if config.tensor_count() > len(entries):    # a damaged config can ask for 10**9 layers: count first
        raise StateFileError(path, f"config asks for {config.tensor_count()} parameter tensors but the file "
                                   f"holds {len(entries)} tensors")
    shapes = config.param_shapes()
    params = _tensors(path, entries, "param/", shapes)
    opt_name = progress["optimizer"]
    if opt_name not in OPTIMIZER_KEYS or opt_name != train_config.get("optimizer"):
        raise StateFileError(path, f"optimizer {opt_name!r} disagrees with the train config")
    opt_shapes = {f"{k}.{n}": s for k in OPTIMIZER_KEYS[opt_name] for n, s in shapes.items()}
    opt_arrays = _tensors(path, entries, "opt/", opt_shapes)
    carried = _tensors(path, entries, "", task.carried_shapes(config, train_config))
    unexpected = set(entries) - {"param/" + n for n in params} - {"opt/" + n for n in opt_arrays} - set(carried)
    if unexpected:
        raise StateFileError(path, f"unexpected tensors {', '.join(sorted(unexpected)[:8])}")
    return RunState(config=config, vocab=vocab, train_config=train_config, run_config=run_config,
                    corpus_sha256=digests, params=params, opt_arrays=opt_arrays, tensors=carried,
                    rng_state=rng_state, progress=progress, task=kind)


def _required(meta, key) -> str:
    if key not in meta:
        raise KeyError(f"metadata has no {key!r} key")
    return meta[key]


def _json_object(meta, key) -> dict:
    d = json.loads(_required(meta, key))
    if not isinstance(d, dict):
        raise ValueError(f"{key} is not a JSON object")
    return d


def _progress(p: dict) -> dict:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for k in _PROGRESS_INTS:
        if not is_int(p.get(k)):
            raise ValueError(f"progress {k} must be an integer >= 0, got {p.get(k)!r}")
    for k in _PROGRESS_FLOATS:
        if not is_num(p.get(k)) or p[k] < 0:
            raise ValueError(f"progress {k} must be a number >= 0, got {p.get(k)!r}")
    for k in _PROGRESS_OPT_FLOATS:
        if p.get(k) is None:
            p[k] = math.inf
        elif not is_num(p[k]):
            raise ValueError(f"progress {k} must be a number or null, got {p[k]!r}")
    recent = p.get("recent")
    if not isinstance(recent, list) or len(recent) > 1000 or not all(is_num(v) for v in recent):
        raise ValueError("progress recent must be a list of finite numbers")
    scalars = p.get("opt_scalars")
    if not (isinstance(scalars, dict) and is_int(scalars.get("t")) and is_num(scalars.get("lr"))
            and scalars["lr"] > 0):
        raise ValueError(f"progress opt_scalars must hold t and lr, got {scalars!r}")
    for k in ("optimizer", "run_id", "stopped_by"):
        if not isinstance(p.get(k), str):
            raise ValueError(f"progress {k} must be a string")
    return p


def _tensors(path, entries, prefix, shapes) -> dict[str, np.ndarray]:
    out = {}
    for name, shape in shapes.items():
        view = entries.get(prefix + name)
        if view is None:
            raise StateFileError(path, f"tensor {prefix}{name} is missing")
        if view["dtype"] != "F32":
            raise StateFileError(path, f"tensor {prefix}{name} has dtype {view['dtype']}, expected F32")
        if tuple(view["shape"]) != tuple(shape):
            raise StateFileError(path, f"tensor {prefix}{name} has shape {list(view['shape'])}, "
                                       f"expected {list(shape)}")
        a = np.frombuffer(view["data"], dtype="<f4").reshape(shape).astype(np.float32, order="C", copy=True)
        if not np.isfinite(a).all():
            raise StateFileError(path, f"tensor {prefix}{name} holds non-finite values (NaN or inf)")
        out[name] = a
    return out


# ------------------------------------------------------------------------ options of a resumed run
RUN_OPTIONS = ("checkpoint_every", "on_nonfinite")                # may change, kept in run_config


def resume_options(st: RunState, values: dict, explicit: set, where) -> tuple[dict, list[str]]:
    """The option values a resumed run uses, and notes on what changed.

    values: every CLI parameter by name; explicit: the names the user gave on the command line. Options
    the user did not give take the run's value. A given architecture or data option (the task's
    `resume_fixed`) or a FIXED training option (the training config's field metadata, charlm.config)
    that differs from the run's is a CharlmError naming it; CHANGEABLE options and checkpointing may
    change, and given LIMIT options replace all of the run's limits.
    """
    from charlm.tasks import task_class
    task = task_class(st.task)
    tc_class = task.train_config_class
    out = dict(values)
    notes = []

    def conflict(name, given, saved):
        flag = "--" + name.replace("_", "-")
        shown = flag if isinstance(given, bool) else f"{flag} {given}"
        raise CharlmError(f"--resume: {shown} conflicts with the run saved in {where}, which has "
                          f"{name.replace('_', ' ')} {_show(saved)}; it is fixed for a run: drop the option, "
                          f"or start a new run without --resume")

    fixed = task.resume_fixed(st, values)
    fixed.update({name: st.train_config[name] for name in tc_class.options(FIXED)})
    for name, saved in fixed.items():
        if name in explicit and values[name] != saved:
            conflict(name, values[name], saved)
        out[name] = saved
    if "valid_path" not in explicit:
        out["valid_path"] = st.run_config.get("valid", values["valid_path"])
    for name in tc_class.options(CHANGEABLE):
        saved = st.train_config.get(name, values[name])            # absent from runs of older versions
        if name in explicit and values[name] != saved:
            notes.append(f"--{name.replace('_', '-')} {values[name]} (the run had {_show(saved)})")
        else:
            out[name] = saved
    limits = tc_class.options(LIMIT)
    if any(name in explicit for name in limits):
        for name in limits:
            out[name] = values[name] if name in explicit else 0
    else:
        for name in limits:
            out[name] = st.train_config[name]
    for name in RUN_OPTIONS:
        if name not in explicit:
            out[name] = st.run_config.get(name, values[name])
    return out, notes


def _show(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return "none" if v is None else str(v)
