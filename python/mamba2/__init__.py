"""mamba2: Mamba-2 (SSD) language models and the three SSD forms, from Python.

Pure ctypes over the C library of mamba2.c (its public API, include/mamba2.h); numpy in and out.
Build or install the library first (``make lib`` or ``make install``); where the package looks for
it is in ``mamba2._library`` (``MAMBA2_LIBRARY``, pkg-config, the system, the checkout's build/lib/).

::

    import mamba2

    with mamba2.Model("data/stdlib-mamba2", backend="cpu") as model:
        print(model.generate("def fibonacci(n):\\n    ", 32))           # greedy, text in and text out
        logits = model.prefill(model.tokenizer.encode("import os\\n"))  # [V] float32

    y, final_state = mamba2.ssd_chunked(x, dt, A, B, C, state, chunk_size=64)

Errors of the C library are raised as Mamba2Error subclasses (one per error code) carrying its message.
"""
import ctypes

from . import _library
from ._library import __version__
from .errors import (ArgumentError, BackendError, FileError, FormatError, LibraryError, Mamba2Error,
                     OutOfMemoryError, TokenError)
from .model import Model, Sampler, State, Tokenizer, read_tensors
from .ssd import ssd_chunked, ssd_quadratic, ssd_recurrent

library_path = _library.library_path


def version():
    """The loaded C library's version, "MAJOR.MINOR.PATCH"."""
    return _library.lib().mamba2_version().decode()


def backends():
    """The backends built into the loaded library, e.g. ``["ref", "cpu"]`` (``"gpu"`` in a CUDA build)."""
    return _library.lib().mamba2_backend_list().decode().split(",")


def config_sizes(config_json):
    """Parameters and bytes of one sequence's state of a configuration alone, without weights.

    Args:
        config_json: the text of a ``config.json`` (Hugging Face) or ``params.json`` (Mistral).

    Returns:
        ``(n_params, state_bytes)``.

    Raises:
        FormatError: the text is not a valid configuration (the message says why).
    """
    n_params, state_bytes = ctypes.c_longlong(), ctypes.c_longlong()
    _library.call("mamba2_config_sizes", config_json.encode(), ctypes.byref(n_params), ctypes.byref(state_bytes))
    return n_params.value, state_bytes.value


__all__ = [
    "__version__",
    "Model", "State", "Tokenizer", "Sampler", "read_tensors",
    "ssd_recurrent", "ssd_quadratic", "ssd_chunked",
    "version", "backends", "config_sizes", "library_path",
    "Mamba2Error", "ArgumentError", "TokenError", "FileError", "FormatError", "BackendError", "OutOfMemoryError",
    "LibraryError",
]
