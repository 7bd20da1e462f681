"""Lets test modules import the shared helpers beside them (support.py, reference.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
