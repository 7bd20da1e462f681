"""charlm/1 model files: exact round trip, atomic save, and a strict loader that only raises ModelFileError."""
from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import struct

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import charlm
from charlm import checkpoint
from charlm.checkpoint import LoadedModel, load_model, read_metadata, save_model, write_atomic
from charlm.config import ModelConfig
from charlm.errors import CharlmError, ModelFileError
from support import mutate

VOCAB = ["<unk>", "<eos>"] + list("abcdefgh")
CONFIG = ModelConfig(level="char", cell="lstm", layers=2, hidden=8, embed=8, vocab_size=10)


def random_params(config: ModelConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in config.param_shapes().items()}


def standard_metadata(config=CONFIG, vocab=VOCAB) -> dict[str, str]:
    return {"format": "charlm/1", "config": config.to_json(), "vocab": json.dumps(vocab)}


def write_raw(path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None) -> pathlib.Path:
    """A safetensors file written without save_model's checks, to build broken models."""
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return path


def raw_file(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, random_params(CONFIG), CONFIG, VOCAB, {"history": "[1, 2]", "note": "héllo ✓"})
    return path


def assert_model_error(path, *fragments: str) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# ------------------------------------------------------------------------------------- round trip

def test_round_trip_is_exact(tmp_path):
    params = random_params(CONFIG, seed=1)
    path = tmp_path / "m.safetensors"
    save_model(path, params, CONFIG, VOCAB, {"history": "[1, 2]", "note": "héllo ✓"})
    m = load_model(path)
    assert isinstance(m, LoadedModel)
    assert m.config == CONFIG
    assert m.vocab == VOCAB
    assert m.meta == {"history": "[1, 2]", "note": "héllo ✓"}
    assert list(m.params) == list(CONFIG.param_shapes())
    for name, a in params.items():
        b = m.params[name]
        assert b.dtype == np.float32 and b.flags.c_contiguous and b.flags.writeable
        assert b.tobytes() == a.tobytes(), name
    m.params["decoder.bias"][0] = 42.0  # writable copies, not views of a shared buffer


def test_float64_params_are_saved_as_float32(tmp_path):
    params = random_params(CONFIG, dtype=np.float64)
    params["embedding.weight"] = np.asfortranarray(params["embedding.weight"])
    save_model(tmp_path / "m.safetensors", params, CONFIG, VOCAB)
    m = load_model(tmp_path / "m.safetensors")
    for name, a in params.items():
        assert m.params[name].tobytes() == a.astype(np.float32).tobytes()
    assert m.meta == {}


@pytest.mark.parametrize("config", [
    ModelConfig(cell="lstm", layers=1, hidden=6, embed=6, vocab_size=10, tied=True),
    ModelConfig(cell="lstm", layers=2, hidden=5, embed=3, vocab_size=10, peephole=True),
    ModelConfig(cell="lstm", layers=2, hidden=5, embed=3, vocab_size=10, bidirectional=True),
    ModelConfig(cell="gru", layers=2, hidden=4, embed=3, vocab_size=10, gru_variant="minimal", bidirectional=True),
    ModelConfig(cell="gru", layers=1, hidden=4, embed=3, vocab_size=10),
    ModelConfig(cell="rnn", layers=3, hidden=4, embed=3, vocab_size=10, activation="relu", level="word",
                lowercase=True),
], ids=["tied", "peephole", "bilstm", "bigru-minimal", "gru", "rnn-relu-word"])
def test_variants_round_trip(tmp_path, config):
    params = random_params(config, seed=2)
    path = tmp_path / "m.safetensors"
    save_model(path, params, config, VOCAB)
    m = load_model(path)
    assert m.config == config
    assert set(m.params) == set(config.param_shapes())
    for name in params:
        assert m.params[name].tobytes() == params[name].tobytes()
    with safetensors.safe_open(path, "numpy") as f:
        keys = set(f.keys())
    assert keys == set(config.param_shapes())
    if config.tied:
        assert "decoder.weight" not in keys
    if config.peephole:
        assert f"rnn.weight_peep_l{config.layers - 1}" in keys
    if config.bidirectional:
        assert "rnn.weight_ih_l1_reverse" in keys


def test_file_follows_the_spec(model_path):
    with safetensors.safe_open(model_path, "numpy") as f:
        meta = f.metadata()
        for name in f.keys():
            assert f.get_tensor(name).dtype == np.float32
    assert meta["format"] == "charlm/1"
    assert json.loads(meta["vocab"]) == VOCAB
    config = json.loads(meta["config"])
    for key in ("level", "cell", "layers", "hidden", "embed", "unk_id", "eos_id", "lowercase", "tied",
                "peephole", "bidirectional"):
        assert key in config
    assert meta["history"] == "[1, 2]"
    assert all(isinstance(v, str) for v in meta.values())


def test_read_metadata(model_path):
    meta = read_metadata(model_path)
    assert meta["format"] == "charlm/1"
    assert ModelConfig.from_json(meta["config"], vocab_size=10) == CONFIG
    assert meta["note"] == "héllo ✓"


def test_vocab_with_non_ascii_tokens(tmp_path):
    vocab = ["<unk>", "<eos>", "é", "ß", "✓", "😀", "\n", "\x00", "\"", "\\"]
    save_model(tmp_path / "m.safetensors", random_params(CONFIG), CONFIG, vocab)
    assert load_model(tmp_path / "m.safetensors").vocab == vocab


# ----------------------------------------------------------------------------------- save errors

def test_save_refuses_non_finite_and_keeps_old_file(model_path):
    before = model_path.read_bytes()
    for bad in (np.nan, np.inf, -np.inf, 1e39):  # 1e39 overflows float32
        params = random_params(CONFIG, seed=3, dtype=np.float64)
        params["rnn.weight_hh_l1"][2, 3] = bad
        with pytest.raises(CharlmError, match="rnn.weight_hh_l1"):
            save_model(model_path, params, CONFIG, VOCAB)
        assert model_path.read_bytes() == before
    assert os.listdir(model_path.parent) == [model_path.name]


@pytest.mark.parametrize("change, fragment", [
    (lambda p: p.pop("decoder.bias"), "missing decoder.bias"),
    (lambda p: p.update(extra=np.zeros(3, np.float32)), "unexpected extra"),
    (lambda p: p.update({"decoder.bias": np.zeros(11, np.float32)}), "decoder.bias has shape [11]"),
    (lambda p: p.update({"decoder.bias": np.array(["x"] * 10)}), "decoder.bias"),
])
def test_save_refuses_params_that_do_not_match(tmp_path, change, fragment):
    params = random_params(CONFIG)
    change(params)
    with pytest.raises(CharlmError, match=re.escape(fragment)):
        save_model(tmp_path / "m.safetensors", params, CONFIG, VOCAB)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("vocab, meta", [
    (VOCAB[:-1], None),
    (["<eos>", "<unk>"] + VOCAB[2:], None),
    (VOCAB[:-1] + ["a"], None),
    (VOCAB[:-1] + ["\ud800"], None),
    (VOCAB, {"format": "charlm/2"}),
    (VOCAB, {"vocab": "[]"}),
    (VOCAB, {"n": 3}),
])
def test_save_refuses_bad_vocab_or_meta(tmp_path, vocab, meta):
    with pytest.raises(CharlmError):
        save_model(tmp_path / "m.safetensors", random_params(CONFIG), CONFIG, vocab, meta)
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_full_disk_leaves_previous_file(model_path, monkeypatch, failing):
    before = model_path.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "write":  # fdopen's file object: fail on the first write
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def fileno(self):
                return self.f.fileno()

            write = flush = staticmethod(no_space)

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(os, failing, no_space)
    with pytest.raises(CharlmError) as info:
        save_model(model_path, random_params(CONFIG, seed=9), CONFIG, VOCAB)
    message = str(info.value)
    assert str(model_path) in message and "No space left on device" in message
    assert "previous file there is unchanged" in message
    monkeypatch.undo()
    assert model_path.read_bytes() == before
    assert os.listdir(model_path.parent) == [model_path.name]  # no temp file left behind
    assert load_model(model_path).params["decoder.bias"].tobytes() != \
        random_params(CONFIG, seed=9)["decoder.bias"].tobytes()


def test_full_disk_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(CharlmError):
        save_model(tmp_path / "m.safetensors", random_params(CONFIG), CONFIG, VOCAB)
    assert os.listdir(tmp_path) == []


def test_write_atomic(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, b"one")
    write_atomic(str(path), b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["state.json"]
    with pytest.raises(CharlmError, match="could not save"):
        write_atomic(tmp_path / "no" / "such" / "dir" / "f", b"x")
    with pytest.raises(CharlmError, match="unchanged"):
        write_atomic(tmp_path, b"x")  # a directory is in the way
    assert os.listdir(tmp_path) == ["state.json"]


def test_save_keeps_file_mode(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    save_model(path, random_params(CONFIG), CONFIG, VOCAB)
    assert os.stat(path).st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------------- load errors

def test_missing_file_and_directory(tmp_path):
    assert_model_error(tmp_path / "nope.safetensors", "no such file")
    assert_model_error(tmp_path, "directory")
    for fn in (read_metadata,):
        with pytest.raises(ModelFileError, match="no such file"):
            fn(tmp_path / "nope.safetensors")


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(5)
    for n in (0, 3, 8, 100, 5000):
        path = tmp_path / f"r{n}"
        path.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        assert_model_error(path)
        with pytest.raises(ModelFileError):
            read_metadata(path)


def test_truncated(model_path):
    data = model_path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    for cut in (0, 1, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, len(data) - 4, len(data) - 1):
        model_path.write_bytes(data[:cut])
        err = assert_model_error(model_path)
        if cut < 8:
            assert "too short" in err.problem
        elif cut < 8 + n:
            assert "header length" in err.problem
        else:
            assert "damaged" in err.problem
        with pytest.raises(ModelFileError):
            read_metadata(model_path)


@pytest.mark.parametrize("blob", [
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.",          # pickle protocol 4
    b"\x80\x02}q\x00.",                                               # legacy torch.save
    b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40,             # torch.save zip
    b"PK\x03\x04",
])
def test_pytorch_files(tmp_path, blob):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(blob)
    assert_model_error(path, "PyTorch pickle/zip", "safetensors")
    with pytest.raises(ModelFileError, match="PyTorch"):
        read_metadata(path)


@pytest.mark.parametrize("target", [0x10280, 0x10380, 0x10480, 0x10580])
def test_header_length_that_looks_like_pickle_magic_still_loads(tmp_path, target):
    """A header of 0x10280 bytes starts the file with b"\\x80\\x02", the bytes of a protocol-2 pickle."""
    params = random_params(CONFIG)

    def header_length(pad):
        data = safetensors.numpy.save(params, metadata={**standard_metadata(), "pad": "x" * pad})
        return struct.unpack("<Q", data[:8])[0]

    start = target - header_length(0) - 16
    pad = next(p for p in range(start, start + 32) if header_length(p) == target)
    path = tmp_path / "m.safetensors"
    save_model(path, params, CONFIG, VOCAB, {"pad": "x" * pad})
    assert path.read_bytes()[:2] == bytes([0x80, target >> 8 & 0xFF])
    assert load_model(path).meta["pad"] == "x" * pad
    assert read_metadata(path)["pad"] == "x" * pad


@pytest.mark.parametrize("length", [2**63 + 5, 2**40, 100 * 1024 * 1024 + 1, 10_000])
def test_absurd_header_length(tmp_path, length):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", length) + b"{}" + b" " * 100)
    assert_model_error(path, "header length field", str(length))


@pytest.mark.parametrize("header", [b"{not json}", b"\xff\xfe{}", b"[1, 2]", b"\"s\"", b"[" * 50000 + b"]" * 50000])
def test_header_not_json_object(tmp_path, header):
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert_model_error(path, "header")
    with pytest.raises(ModelFileError, match="header"):
        read_metadata(path)


def test_metadata_missing(tmp_path):
    path = write_raw(tmp_path / "m.safetensors", random_params(CONFIG), None)
    assert_model_error(path, "no metadata")
    with pytest.raises(ModelFileError, match="no metadata"):
        read_metadata(path)


def test_metadata_value_not_a_string(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(raw_file({"__metadata__": {"format": "charlm/1", "n": 3}}))
    assert_model_error(path, "'n'", "not a string")
    path.write_bytes(raw_file({"__metadata__": ["format"]}))
    assert_model_error(path, "__metadata__")


@pytest.mark.parametrize("changes, fragments", [
    ({"format": "charlm/2"}, ["unknown format version 'charlm/2'"]),
    ({"format": None}, ["no 'format'"]),
    ({"config": None}, ["no 'config'"]),
    ({"vocab": None}, ["no 'vocab'"]),
    ({"config": "{"}, ["config metadata is not valid JSON"]),
    ({"config": "[]"}, ["bad config", "not a JSON object"]),
    ({"config": json.dumps({"level": "char", "cell": "lstm"})}, ["bad config", "lacks", "hidden"]),
    ({"config": json.dumps({**json.loads(CONFIG.to_json()), "cell": "transformer"})}, ["bad config", "cell"]),
    ({"config": json.dumps({**json.loads(CONFIG.to_json()), "layers": [2]})}, ["bad config", "layers"]),
    ({"config": json.dumps({**json.loads(CONFIG.to_json()), "vocab_size": 11})}, ["vocab_size 11"]),
    ({"config": json.dumps({**json.loads(CONFIG.to_json()), "hidden": 9})},
     ["rnn.weight_ih_l0 has shape [32, 8], expected [36, 8]"]),
    ({"config": json.dumps({**json.loads(CONFIG.to_json()), "layers": 10**9})}, ["tensors", "holds 11"]),
    ({"vocab": "not json"}, ["vocab metadata is not valid JSON"]),
    ({"vocab": json.dumps({"a": 1})}, ["bad vocab", "list"]),
    ({"vocab": json.dumps(VOCAB[:-1] + [7])}, ["bad vocab", "not a string"]),
    ({"vocab": json.dumps(VOCAB[:-1] + ["a"])}, ["bad vocab", "'a' appears twice"]),
    ({"vocab": json.dumps(["<eos>", "<unk>"] + VOCAB[2:])}, ["bad vocab", "unk_id is 0", "'<unk>'"]),
    ({"vocab": json.dumps(VOCAB[:1] + ["EOS"] + VOCAB[2:])}, ["bad vocab", "eos_id is 1"]),
    ({"vocab": json.dumps(VOCAB + ["z"])}, ["bad config", "vocab_size 10", "11 tokens"]),
    ({"vocab": "[]"}, ["bad vocab"]),
])
def test_bad_metadata(tmp_path, changes, fragments):
    meta = standard_metadata()
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    path = write_raw(tmp_path / "m.safetensors", random_params(CONFIG), meta)
    assert_model_error(path, *fragments)


def test_format_checked_by_read_metadata(tmp_path):
    path = write_raw(tmp_path / "m.safetensors", random_params(CONFIG), {**standard_metadata(), "format": "charlm/2"})
    with pytest.raises(ModelFileError, match="unknown format version 'charlm/2'"):
        read_metadata(path)


def test_metadata_is_never_evaluated(tmp_path):
    config = {**json.loads(CONFIG.to_json()), "cell": "__import__('os').system('touch pwned')"}
    path = write_raw(tmp_path / "m.safetensors", random_params(CONFIG), {**standard_metadata(), "config": json.dumps(config)})
    assert_model_error(path, "cell must be one of")
    assert not pathlib.Path("pwned").exists()


def tensor_case(name):
    params = random_params(CONFIG)
    if name == "shape":
        params["rnn.weight_hh_l1"] = np.zeros((32, 9), np.float32)
    elif name == "extra":
        params["rnn.weight_peep_l0"] = np.zeros((3, 8), np.float32)
    elif name == "missing":
        del params["decoder.weight"]
    elif name == "float64":
        params["embedding.weight"] = params["embedding.weight"].astype(np.float64)
    elif name == "float16":
        params["decoder.bias"] = params["decoder.bias"].astype(np.float16)
    elif name == "int32":
        params["decoder.bias"] = np.zeros(10, np.int32)
    elif name == "nan":
        params["rnn.bias_ih_l1"][5] = np.nan
    elif name == "inf":
        params["decoder.weight"][9, 7] = -np.inf
    return params


@pytest.mark.parametrize("case, fragments", [
    ("shape", ["rnn.weight_hh_l1 has shape [32, 9], expected [32, 8]"]),
    ("extra", ["unexpected rnn.weight_peep_l0"]),
    ("missing", ["missing decoder.weight"]),
    ("float64", ["embedding.weight has dtype F64", "F32"]),
    ("float16", ["decoder.bias has dtype F16"]),
    ("int32", ["decoder.bias has dtype I32"]),
    ("nan", ["rnn.bias_ih_l1", "non-finite"]),
    ("inf", ["decoder.weight", "non-finite"]),
])
def test_bad_tensors(tmp_path, case, fragments):
    path = write_raw(tmp_path / "m.safetensors", tensor_case(case), standard_metadata())
    assert_model_error(path, *fragments)


def test_bfloat16_and_other_dtypes_numpy_lacks(tmp_path):
    meta = standard_metadata()
    params = random_params(CONFIG)
    header = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, a in params.items():
        dtype, raw = ("BF16", a.astype(np.float16).tobytes()) if name == "decoder.bias" else ("F32", a.tobytes())
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    path = tmp_path / "m.safetensors"
    path.write_bytes(raw_file(header, b"".join(blobs)))
    assert_model_error(path, "decoder.bias has dtype BF16")


def test_bad_offsets(tmp_path):
    header = {"__metadata__": standard_metadata(),
              "decoder.bias": {"dtype": "F32", "shape": [10], "data_offsets": [0, 4000]}}
    path = tmp_path / "m.safetensors"
    path.write_bytes(raw_file(header, b"\x00" * 40))
    assert_model_error(path, "damaged safetensors data")
    with pytest.raises(ModelFileError, match="damaged"):
        read_metadata(path)


# -------------------------------------------------------------------------------------- fuzzing

@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    config = ModelConfig(cell="gru", layers=1, hidden=3, embed=2, vocab_size=10)
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    save_model(path, random_params(config), config, VOCAB, {"k": "v"})
    return path, path.read_bytes()


mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("header"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("length"), st.integers(0, 2**64 - 1), st.just(0)),
    st.tuples(st.just("text"), st.floats(0, 1, exclude_max=True),
              st.sampled_from([b"\"", b"}", b"{", b",", b"1", b"-", b"null", b"NaN", b"\\u0000", b"[]", b"F64",
                               b"\\ud800", b"\"F16\"", b"99999999999999999999"])),
)




@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_mutated_files_only_raise_model_file_error(fuzz_base, ops):
    path, data = fuzz_base
    bad = path.with_name("mutated.safetensors")
    bad.write_bytes(mutate(data, ops))
    for reader in (load_model, read_metadata):
        try:
            result = reader(bad)
        except ModelFileError as e:
            assert str(bad) in str(e)
        else:
            if reader is load_model:
                assert all(np.isfinite(a).all() and a.dtype == np.float32 for a in result.params.values())


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
config_keys = ["level", "cell", "layers", "hidden", "embed", "vocab_size", "unk_id", "eos_id", "lowercase",
               "tied", "activation", "gru_variant", "peephole", "bidirectional"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.dictionaries(st.sampled_from(config_keys), json_value, max_size=4),
       vocab=st.one_of(st.just(VOCAB), json_value))
def test_fuzz_metadata_values(tmp_path, overrides, vocab):
    config = {**json.loads(CONFIG.to_json()), **overrides}
    meta = {**standard_metadata(), "config": json.dumps(config), "vocab": json.dumps(vocab)}
    path = write_raw(tmp_path / "m.safetensors", random_params(CONFIG), meta)
    try:
        load_model(path)
    except ModelFileError as e:
        assert str(path) in str(e)


# ------------------------------------------------------------------------------------- no pickle

FORBIDDEN = [
    r"^\s*(import|from)\s+(c?pickle|_pickle|dill|cloudpickle|joblib|marshal|shelve)\b",
    r"^\s*import\s+.*\b(c?pickle|marshal|shelve|dill)\b",
    r"\bpickle\.(loads?|dumps?|Unpickler)\b",
    r"\bmarshal\.",
    r"\btorch\.load\s*\(",
    r"allow_pickle\s*=\s*True",
    r"(?<![\w.])(eval|exec)\s*\(",
    r"__import__\s*\(",
]


def test_no_pickle_or_eval_in_package_source():
    root = pathlib.Path(charlm.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert root / "checkpoint.py" in files and len(files) >= 3
    offenders = []
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern in FORBIDDEN:
                if re.search(pattern, line):
                    offenders.append(f"{path.relative_to(root)}:{lineno}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("line", ["import pickle", "from pickle import loads", "import os, pickle",
                                  "x = pickle.load(f)", "torch.load(p)", "np.load(p, allow_pickle=True)",
                                  "eval(s)", "exec(code)", "import marshal", "marshal.loads(b)"])
def test_no_pickle_patterns_catch_offenders(line):
    assert any(re.search(p, line) for p in FORBIDDEN)


@pytest.mark.parametrize("line", ["model.eval()", "def evaluate(x):", "# never unpickles", "self.retrieval(x)"])
def test_no_pickle_patterns_allow_innocent_lines(line):
    assert not any(re.search(p, line) for p in FORBIDDEN)


def test_checkpoint_module_does_not_import_numba():
    source = pathlib.Path(checkpoint.__file__).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import|from)\s+numba", source, re.M)
