"""tanh and the logistic function for the cell kernels, fast in float32 and exact in float64.

In float32, libm's tanhf/expf are opaque calls that stop LLVM from vectorizing the gate loops, and
they dominated the time of a step (about 10 ns each, 5 per LSTM unit). So for float32 these use a
rational approximation made of plain arithmetic, which vectorizes:
    tanh(x) ≈ x · P(x²) / Q(x²)  for |x| <= 7.90531110763549805, else ±1,
with the minimax coefficients of Eigen's `ptanh_float` (P of degree 6 in x², Q of degree 3); its
error is a few float32 ulps (tested against float64 tanh). The logistic function follows from
    σ(x) = (1 + tanh(x/2)) / 2.
In float64 (the gradient checks and the reference comparisons) they are np.tanh and 1/(1+exp(-x)).
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

_CLAMP = np.float32(7.90531110763549805)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_HALF = np.float32(0.5)


def tanh(x):
    """tanh(x); float32: the rational approximation above."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)); float32: (1 + tanh(x/2)) / 2."""
    return 1.0 / (1.0 + np.exp(-x))


@njit(inline="always", error_model="numpy")
def _tanh32(x):
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return p / q


@overload(tanh, inline="always")
def _ol_tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)


@overload(sigmoid, inline="always")
def _ol_sigmoid(x):
    if x == types.float32:
        return lambda x: _HALF + _HALF * _tanh32(_HALF * x)
    return lambda x: 1.0 / (1.0 + np.exp(-x))
