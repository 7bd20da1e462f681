"""The threaded paths: batch rows split across Numba threads, the float32 activations, and the recurrent
weights cut into column chunks.

Gradient checks elsewhere use small batches that run on one thread; here the batch is large enough to be
split, and the result must equal the float64 reference and the single-thread run.
"""

import ast
import functools
import importlib.metadata
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from charlm import generate, model
from charlm.config import ModelConfig
from charlm.kernels import cells, gemm
from charlm.kernels.activations import exp, sigmoid, tanh

import reference

CELLS = [dict(cell="lstm"), dict(cell="lstm", peephole=True), dict(cell="gru"), dict(cell="gru", gru_variant="minimal"),
         dict(cell="rnn"), dict(cell="rnn", activation="relu")]


def _setup(kw, B=40, T=5, dtype=np.float64):
    cfg = ModelConfig(layers=2, hidden=6, embed=5, vocab_size=9, **kw)
    rng = np.random.default_rng(3)
    P = {k: v.astype(dtype) for k, v in reference.random_params(cfg, rng).items()}
    x = rng.integers(0, 9, (T, B)).astype(np.int32)
    y = rng.integers(0, 9, (T, B)).astype(np.int32)
    state = rng.uniform(-0.5, 0.5, (2, 2, B, 6)).astype(dtype)
    return cfg, P, x, y, state


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
@pytest.mark.parametrize("kw", CELLS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_split_batch_equals_reference_and_one_thread(kw):
    cfg, P, x, y, state = _setup(kw)
    assert gemm.parts(x.shape[1]) == 2                        # the batch really is split
    nll, new_state = model.token_nll(cfg, P, x, y, state)
    ref = -reference.lm_token_logprobs(cfg, P, x, y, [(state[k, 0], state[k, 1]) for k in range(2)])
    np.testing.assert_allclose(nll, ref, rtol=1e-10, atol=1e-12)
    loss2, g2, s2 = model.loss_and_grads(cfg, P, x, y, state)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert gemm.parts(x.shape[1]) == 1
        loss1, g1, s1 = model.loss_and_grads(cfg, P, x, y, state)
    finally:
        numba.set_num_threads(old)
    assert loss1 == pytest.approx(loss2, rel=1e-13)
    np.testing.assert_allclose(s1, s2, rtol=0, atol=1e-13)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("kw", CELLS[:3], ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_float32_split_batch_close_to_reference(kw):
    cfg, P, x, y, state = _setup(kw, dtype=np.float32)
    nll, _ = model.token_nll(cfg, P, x, y, state)
    ref = -reference.lm_token_logprobs(cfg, P, x, y, [(state[k, 0], state[k, 1]) for k in range(2)])
    np.testing.assert_allclose(nll, ref, rtol=2e-5, atol=2e-5)


def test_float32_activations_within_a_few_ulp():
    x = np.concatenate([np.linspace(-20, 20, 200001), [0.0, 1e-8, -1e-8, 7.9, -7.9, 9.0, 1e4, -1e4]]).astype(np.float32)

    @numba.njit
    def apply(v):
        t = np.empty_like(v)
        s = np.empty_like(v)
        for i in range(v.shape[0]):
            t[i] = tanh(v[i])
            s[i] = sigmoid(v[i])
        return t, s

    t, s = apply(x)
    xd = x.astype(np.float64)
    eps = np.finfo(np.float32).eps
    assert np.max(np.abs(t - np.tanh(xd))) < 4 * eps           # absolute error, values in [-1, 1]
    assert np.max(np.abs(s - (0.5 + 0.5 * np.tanh(0.5 * xd)))) < 4 * eps   # sigmoid, without exp(1e4) overflowing
    assert np.all(np.abs(t) <= 1) and np.all((s >= 0) & (s <= 1))
    t64, s64 = apply(xd)                                        # float64: libm tanh, not the approximation
    np.testing.assert_allclose(t64, np.tanh(xd), rtol=1e-15, atol=1e-300)


def test_gemm_helpers_match_numpy():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((70, 9))
    B = rng.standard_normal((9, 5))
    out = np.empty((70, 5))
    gemm.matmul(A, B, out)
    np.testing.assert_allclose(out, A @ B, rtol=1e-12)
    bias = rng.standard_normal(5)
    gemm.matmul_bias(A, B, bias, out)
    np.testing.assert_allclose(out, A @ B + bias, rtol=1e-12)
    C = rng.standard_normal((70, 4))
    acc = np.ones((9, 4))
    gemm.matmul_tn_add(A, C, acc)
    np.testing.assert_allclose(acc, 1 + A.T @ C, rtol=1e-12)


def test_float32_exp_within_two_ulp():
    x = np.concatenate([np.linspace(-87, 88, 400001), [0.0, -0.0, 1e-8, -1e-8, 0.34657, -0.34657]]).astype(np.float32)

    @numba.njit
    def apply(v):
        out = np.empty_like(v)
        for i in range(v.shape[0]):
            out[i] = exp(v[i])
        return out

    e = apply(x)
    want = np.exp(x.astype(np.float64))
    normal = want > 1e-36                                       # the softmax never needs smaller ones
    assert np.max(np.abs(e - want)[normal] / want[normal]) < 2 * np.finfo(np.float32).eps
    assert e[x == 0].tolist() == [1.0, 1.0]
    tiny = apply(np.array([-88.0, -100.0, -1e30], np.float32))  # clamped: about 1e-38 stands for 0
    assert np.all((tiny >= 0) & (tiny < 2e-38))
    np.testing.assert_allclose(apply(x.astype(np.float64)), np.exp(x.astype(np.float64)), rtol=1e-15)  # float64: libm


# ---------------------------------------------------------------------------------------------------
# Recurrent weights cut into column chunks (cells.column_chunks), so BLAS can skip packing


@pytest.mark.parametrize("rows,K,N", [(16, 128, 512), (16, 512, 2048), (16, 2048, 512), (20, 200, 800), (1, 512, 2048),
                                      (3, 7, 5), (16, 4096, 4096)])
@pytest.mark.parametrize("transpose", [False, True], ids=["W", "W^T"])
def test_column_chunks_fit_and_multiply_exactly(rows, K, N, transpose):
    rng = np.random.default_rng(rows * K + N)
    W = rng.standard_normal((K, N)).astype(np.float32)
    A = rng.standard_normal((rows, K)).astype(np.float32)
    Wc = cells.column_chunks(np.ascontiguousarray(W.T), rows, True) if transpose else cells.column_chunks(W, rows)
    nc, _, cw = Wc.shape
    small = rows * K * N <= cells.SMALL_MNK
    if nc > 1:
        assert rows * K * cw <= cells.SMALL_MNK and cw % 8 == 0 and (nc - 1) * cw < N <= nc * cw
    else:
        assert small or rows * K * 8 > cells.SMALL_MNK                    # fits whole, or nothing fits
    np.testing.assert_array_equal(np.concatenate(list(Wc), axis=1)[:, :N], W)
    assert not np.concatenate(list(Wc), axis=1)[:, N:].any()                # the padding is zero
    out = np.full((rows, N), np.nan, np.float32)
    cells._dot(A, Wc, out, np.empty(nc * rows * cw, np.float32))
    np.testing.assert_allclose(out, A.astype(np.float64) @ W, rtol=1e-4, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("kw", CELLS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_chunked_recurrent_products_change_nothing(kw, monkeypatch):
    """A limit small enough to cut this model's W_hh into padded chunks, forward and backward (LSTM:
    3 chunks of 32 columns forward, 3 of 8 backward; GRU full: 2 padded chunks each way), gives the
    same numbers as whole products, and the same greedy samples."""
    cfg = ModelConfig(layers=2, hidden=24, embed=5, vocab_size=9, **kw)
    rng = np.random.default_rng(11)
    P = {k: v.astype(np.float64) for k, v in reference.random_params(cfg, rng).items()}
    x = rng.integers(0, 9, (5, 40)).astype(np.int32)
    y = rng.integers(0, 9, (5, 40)).astype(np.int32)
    whole = model.loss_and_grads(cfg, P, x, y), model.token_nll(cfg, P, x, y)[0]
    prefix = np.array([cfg.eos_id, 3, 4], np.int32)
    greedy = generate.sample_ids(cfg, P, prefix, 12, 3, 1.0, 0, 1.0, True, False, np.random.default_rng(0))
    monkeypatch.setattr(cells, "SMALL_MNK", 20_000)
    assert cells.column_chunks(P["rnn.weight_hh_l0"], 20, True).shape[0] >= 2 or cfg.cell == "rnn"
    chunked = model.loss_and_grads(cfg, P, x, y), model.token_nll(cfg, P, x, y)[0]
    assert chunked[0][0] == pytest.approx(whole[0][0], rel=1e-13)
    for k in whole[0][1]:
        np.testing.assert_allclose(chunked[0][1][k], whole[0][1][k], rtol=1e-10, atol=1e-13, err_msg=k)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-12, atol=1e-13)
    again = generate.sample_ids(cfg, P, prefix, 12, 3, 1.0, 0, 1.0, True, False, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(again, greedy))


@functools.cache
def _layer_available(name):
    """Whether Numba's `name` threading layer loads here (it may need a system or pip library)."""
    try:
        return _python(_KERNEL_IN_SCOPE + "run()\nprint(numba.threading_layer())\n",
                       NUMBA_THREADING_LAYER=name) == name
    except subprocess.CalledProcessError:
        return False


_KERNEL_IN_SCOPE = ("import numpy, numba\n"
                    "from charlm.optim import _adam_kernel\n"
                    "from charlm.threads import compute_threads\n"
                    "def run():\n"
                    "    a = numpy.ones(64, numpy.float32)\n"
                    "    with compute_threads():\n"
                    "        _adam_kernel(a, a.copy(), a.copy(), a.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001)\n"
                    "    return float(a[0])\n")


def _python(code, drop=lambda name: name == "NUMBA_THREADING_LAYER", **env_extra):
    """stdout of `python -c code` in this environment without the variables `drop` names, plus env_extra."""
    env = {k: v for k, v in os.environ.items() if not drop(k)}
    out = subprocess.run([sys.executable, "-c", code], env={**env, **env_extra}, check=True, capture_output=True,
                         text=True, timeout=120)
    return out.stdout.strip()


def _tbb_installed():
    try:
        importlib.metadata.distribution("tbb")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_tbb_layer_loads_wherever_the_tbb_package_is_installed():
    """pip's tbb wheel is a dependency on x86-64; inside a virtual environment its library is not on the
    loader's path, and without charlm.threads.load_tbb Numba fell back to OpenMP there (not fork-safe)."""
    if not _tbb_installed():
        pytest.skip("the tbb package is not installed (a dependency on x86-64 only)")
    assert _python(_KERNEL_IN_SCOPE + "run()\nprint(numba.threading_layer())\n") == "tbb"


def test_compute_threads_prefers_a_fast_fork_safe_layer():
    """In a fresh process that loads NumPy first (as a user's program does), charlm's kernels run on
    Numba's TBB layer when it loads (fork-safe, ~2 µs a launch), else OpenMP (~2 µs, not fork-safe),
    else workqueue (~70 µs); an explicit NUMBA_THREADING_LAYER wins."""
    code = _KERNEL_IN_SCOPE + "run()\nprint(numba.threading_layer())\n"
    expected = next(name for name in ("tbb", "omp", "workqueue") if _layer_available(name))
    assert _python(code) == expected
    assert _python(code, NUMBA_THREADING_LAYER="workqueue") == "workqueue"


def test_kernels_run_in_forked_children():
    """A program that used charlm, then forks workers (multiprocessing's default on Linux), gets their
    results: with GNU OpenMP as the layer, Numba terminates such a child and the Pool hangs."""
    if not _tbb_installed():
        pytest.skip("needs Numba's TBB layer (the tbb package; a dependency on x86-64 only)")
    code = _KERNEL_IN_SCOPE + ("import multiprocessing\n"
                               "parent = run()\n"
                               "with multiprocessing.get_context('fork').Pool(2) as pool:\n"
                               "    children = pool.starmap(run, [()] * 2)\n"
                               "print(parent == children[0] == children[1], numba.threading_layer())\n")
    assert _python(code) == "True tbb"


def test_compute_threads_caps_the_kernels_blas_loaded_late():
    """A program that loads NumPy before charlm, without OPENBLAS_NUM_THREADS: SciPy's OpenBLAS (the one
    Numba's np.dot calls) loads lazily; compute_threads must load it before capping, or it keeps a
    thread pool that fights the kernels' threads (8k instead of ~100k tok/s, hidden 128)."""
    code = ("import numpy\n"
            "from threadpoolctl import threadpool_info\n"
            "from charlm.kernels import gemm\n"
            "from charlm.threads import compute_threads\n"
            "a = numpy.ones((64, 64), numpy.float32)\n"
            "with compute_threads():\n"
            "    gemm.matmul(a, a, numpy.empty_like(a))\n"
            "    print(sorted((d['filepath'], d['num_threads'])\n"
            "                 for d in threadpool_info() if d['user_api'] == 'blas'))\n")
    out = _python(code, drop=lambda name: name.endswith("_NUM_THREADS"))
    libs = ast.literal_eval(out)                             # [(path, threads)] of every BLAS loaded
    assert libs and all(n == 1 for _, n in libs), libs
