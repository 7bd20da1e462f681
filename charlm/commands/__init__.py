"""Command groups of the CLI beyond the language model's (charlm.cli holds the main group); click only
at import time, the library loads when a command runs."""
