"""What every training command does around the engine: take a saved run's options on --resume, and
tell the user how an interrupted run resumes."""
from __future__ import annotations

import os
import shlex
import sys

import click


def given(ctx, name) -> bool:
    """Did the user set this parameter (command line or environment), rather than leave its default?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def resume_state(ctx, params: dict, out, log):
    """On --resume: (the RunState at OUT.state, the options with the run's values filled in), notes
    logged; else (None, params). The run's thread count is kept unless --threads is given."""
    from charlm.errors import CharlmError
    from charlm.resume import load_state, resume_options, state_path
    if not params.get("resume"):
        if os.path.exists(out):
            hint = " (add --resume to continue the run saved there)" if os.path.exists(state_path(out)) else ""
            log(f"note: {out} exists: this new run replaces it at its first save{hint}")
        return None, params
    where = state_path(out)
    if not os.path.exists(where):
        raise CharlmError(f"--resume: no run state at {where} (a run saves it at each validation, each "
                          f"--checkpoint-every, on Ctrl-C and at the end); start without --resume")
    state = load_state(where)
    explicit = {name for name in params if given(ctx, name)}
    params, notes = resume_options(state, params, explicit, where)
    for note in notes:
        log(f"changed on resume: {note}")
    if params.get("threads") is None:
        params["threads"] = min(state.progress["threads"], os.cpu_count() or 1)
    return state, params


def exit_if_interrupted(res, command: list[str], threads):
    """After a run stopped by SIGINT/SIGTERM: say where things are and how to resume, exit 130/143."""
    if res.stopped_by != "interrupted":
        return
    import signal
    from charlm.cli import EXIT_INTERRUPTED, EXIT_TERMINATED
    command = command + (["--threads", str(threads)] if threads else [])
    name = signal.Signals(res.signal).name if res.signal else "a signal"
    click.echo(f"charlm: stopped by {name} after step {res.steps:,}; the model is at {res.out} and the run state "
               f"at {res.state_path}; resume with: {shlex.join(command)}", err=True)
    sys.exit(EXIT_TERMINATED if res.signal == signal.SIGTERM else EXIT_INTERRUPTED)
