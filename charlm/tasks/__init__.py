"""The tasks the training engine runs (charlm.engine), by the name their run-state files give them.

A task class also reads and writes its part of a run-state file (charlm.resume), without any data:
    kind                              its name ("lm")
    train_config_class                its training config (a charlm.config.RunConfig subclass)
    model_metadata(config, vocab)     -> the model metadata strings it writes (`config`, `vocab`)
    read_model_metadata(path, meta)   -> (config, vocab), ModelFileError when they are unusable
    carried_shapes(config, train_config)  -> the shapes of the tensors it carries between batches
    resume_fixed(state, values)       -> CLI option name -> the run's value, for its model and data options
Its config has `param_shapes()` and `tensor_count()` (as charlm.config.ModelConfig).
"""
from __future__ import annotations

import importlib

_BUILT_IN = {"lm": ("charlm.tasks.lm", "LMTask"), "classify": ("charlm.tasks.classify", "ClassifyTask"),
             "conditional-lm": ("charlm.tasks.conditional", "ConditionalLMTask"),
             "tag": ("charlm.tasks.tag", "TagTask"),
             "seq2seq": ("charlm.tasks.seq2seq", "Seq2SeqTask")}
_registered: dict[str, type] = {}


def register(cls) -> type:
    """Make a task class known to run-state files by its `kind` (tasks outside charlm, and tests)."""
    _registered[cls.kind] = cls
    return cls


def known() -> list[str]:
    return sorted(set(_BUILT_IN) | set(_registered))


def task_class(kind: str):
    """The task class of a run-state file's `task` metadata; KeyError for an unknown kind."""
    if kind in _registered:
        return _registered[kind]
    module, name = _BUILT_IN[kind]
    return getattr(importlib.import_module(module), name)
