"""The error types charlm raises for bad input. The CLI prints their message on one line and exits 1."""


class CharlmError(Exception):
    """A problem with the user's input (file, text, option value) that charlm can explain in one line."""


class ModelFileError(CharlmError):
    """A model file that cannot be loaded: not safetensors, damaged, or not a valid charlm/1 model."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: not a usable charlm model: {problem}")
        self.path = path
        self.problem = problem
