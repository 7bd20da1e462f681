"""tanh, the logistic function and exp for the kernels, fast in float32 and exact in float64.

In float32, libm's tanhf/expf are opaque calls that stop LLVM from vectorizing the gate loops, and
they dominated the time of a step (about 10 ns each, 5 per LSTM unit). So for float32 these use a
rational approximation made of plain arithmetic, which vectorizes:
    tanh(x) ≈ x · P(x²) / Q(x²)  for |x| <= 7.90531110763549805, else ±1,
with the minimax coefficients of Eigen's `ptanh_float` (P of degree 6 in x², Q of degree 3); its
error is a few float32 ulps (tested against float64 tanh). The logistic function follows from
    σ(x) = (1 + tanh(x/2)) / 2.
exp (for the softmax kernels) is Cephes' expf in the same spirit: with n = round(x / ln 2) and
r = x - n ln 2 (|r| <= ln2 / 2, ln 2 split in two parts so the product is exact),
    exp(x) = 2^n · e^r,   e^r ≈ 1 + r + r² P(r)  (P of degree 5),
where 2^n is built from its bits ((n + 127) << 23). Within 2 ulp for results above 1e-36; inputs are
clamped to [-87, 88] (below, a result near 1e-38 stands for 0, negligible beside a softmax's sum >= 1).
In float64 (the gradient checks and the reference comparisons) they are np.tanh, 1/(1+exp(-x)) and
np.exp.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

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
_ONE = np.float32(1.0)
_EXP_LO = np.float32(-87.0)
_EXP_HI = np.float32(88.0)
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)           # exact in 9 bits, so n * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)        # ln 2 - _LN2_HI
_E0 = np.float32(1.9875691500e-4)
_E1 = np.float32(1.3981999507e-3)
_E2 = np.float32(8.3334519073e-3)
_E3 = np.float32(4.1665795894e-2)
_E4 = np.float32(1.6666665459e-1)
_E5 = np.float32(5.0000001201e-1)


def tanh(x):
    """tanh(x); float32: the rational approximation above."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)); float32: (1 + tanh(x/2)) / 2."""
    return 1.0 / (1.0 + np.exp(-x))


def exp(x):
    """exp(x); float32: the range-reduced polynomial above."""
    return np.exp(x)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the low 32 bits of the integer `bits` (a plain
    bitcast, which LLVM vectorizes)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if bits.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(bits), codegen


@njit(inline="always", error_model="numpy")
def _exp32(x):
    x = min(max(x, _EXP_LO), _EXP_HI)
    n = np.floor(x * _LOG2E + _HALF)
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = _E0 * r + _E1
    p = p * r + _E2
    p = p * r + _E3
    p = p * r + _E4
    p = p * r + _E5
    p = p * r * r + r + _ONE
    return p * _float32_from_bits((np.int32(n) + 127) << 23)     # p · 2^n


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


@overload(exp, inline="always")
def _ol_exp(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: np.exp(x)
