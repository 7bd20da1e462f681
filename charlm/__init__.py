"""charlm: character- and word-level recurrent language models on NumPy and Numba.

    import charlm
    lm = charlm.load("model.safetensors")
    print(lm.sample(length=200, temp=0.8)[0])

Importing this package is cheap: NumPy, Numba and the kernels load on first use, so `charlm --help`
starts fast.
"""
__version__ = "0.1.0"

__all__ = ["load", "LanguageModel", "Classifier", "Tagger", "CharlmError", "ModelFileError", "__version__"]


def __getattr__(name):
    if name in ("load", "LanguageModel"):
        from charlm import lm
        return getattr(lm, name)
    if name == "Classifier":
        from charlm import classifier
        return classifier.Classifier
    if name == "Tagger":
        from charlm import tagger
        return tagger.Tagger
    if name in ("CharlmError", "ModelFileError"):
        from charlm import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'charlm' has no attribute {name!r}")
