"""charlm: character- and word-level recurrent language models on NumPy and Numba.

Importing this package is cheap: Numba and the kernels load on first use, so `charlm --help` starts fast.
"""
__version__ = "0.1.0"
