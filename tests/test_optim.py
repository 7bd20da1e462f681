"""charlm.optim against plain NumPy: the global norm and clipping, one Adam and one SGD step."""
import numpy as np
import pytest

from charlm.optim import SGD, Adam, clip_grads, global_norm


def grads_of(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    shapes = [(1,), (15,), (16,), (17,), (33, 7), (4, 100, 3)]      # sizes around the 16 lanes
    return {f"g{i}": (rng.standard_normal(s) * 10 ** rng.uniform(-3, 1)).astype(dtype) for i, s in enumerate(shapes)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_is_the_float64_norm(dtype):
    g = grads_of(1, dtype)
    want = np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in g.values()))
    assert global_norm(g) == pytest.approx(want, rel=1e-13)


def test_clip_scales_to_the_limit_and_leaves_small_gradients_alone():
    g = grads_of(2, np.float64)
    before = {k: v.copy() for k, v in g.items()}
    norm = global_norm(g)
    assert clip_grads(g, norm * 2) == norm and all(np.array_equal(g[k], before[k]) for k in g)
    assert clip_grads(g, norm / 4) == pytest.approx(norm)
    assert global_norm(g) == pytest.approx(norm / 4, rel=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k], before[k] / 4, rtol=1e-12)
    assert clip_grads(g, 0) == pytest.approx(norm / 4)                  # 0 = off


def test_adam_two_steps_match_numpy():
    rng = np.random.default_rng(3)
    p = {"w": rng.standard_normal((37, 5))}
    want = p["w"].copy()
    opt = Adam(p, lr=0.01)
    m = v = 0.0
    for t in (1, 2):
        g = {"w": rng.standard_normal((37, 5))}
        opt.step(p, g)
        m = 0.9 * m + 0.1 * g["w"]
        v = 0.999 * v + 0.001 * g["w"] ** 2
        want -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(p["w"], want, rtol=1e-12, atol=1e-15)


def test_sgd_momentum_matches_numpy():
    rng = np.random.default_rng(4)
    p = {"w": rng.standard_normal(1001)}
    want = p["w"].copy()
    opt = SGD(p, lr=0.5, momentum=0.9)
    u = 0.0
    for _ in range(3):
        g = {"w": rng.standard_normal(1001)}
        opt.step(p, g)
        u = 0.9 * u + g["w"]
        want -= 0.5 * u
    np.testing.assert_allclose(p["w"], want, rtol=1e-12, atol=1e-14)
