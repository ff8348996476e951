"""The optional C extensions: loaded if built at install time, unless their switch says Python.

setup.py builds them with `optional=True`, so an install without a C compiler (or, for the
bill hashing, without OpenSSL's headers) still works and the callers use their Python
definitions, which give the same results (each extension has differential tests).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def optional_extension(name: str, pure_python_env: str) -> ModuleType | None:
    """The extension module `name`, or None if it is not built or `pure_python_env` is "1"."""
    if os.environ.get(pure_python_env) == "1":
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
