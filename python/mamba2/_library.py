"""Finding and loading the C library, and the ctypes declaration of every function the package calls.

Where the library is looked for, in this order (the first that loads and has the expected major
version wins):

1. ``MAMBA2_LIBRARY``: the path of the library file; when it is set, nothing else is tried;
2. the library installed where ``pkg-config --variable=libdir mamba2`` says (``make install``
   writes ``mamba2.pc``; set ``PKG_CONFIG_PATH`` for a prefix pkg-config does not search);
3. ``ctypes.util.find_library("mamba2")``: a library the system's linker knows (``ldconfig``);
4. the repository's build folder, ``build/lib/`` (``make lib``), when the package is run from a checkout.

Only the public API of include/mamba2.h is called. The two structs the header defines for the caller
(``mamba2_error``, ``mamba2_backend_options``) are mirrored here field for field; the tests check
their sizes and offsets against the header compiled by a C compiler. Everything else is an opaque
pointer.
"""
import ctypes
import ctypes.util
import os
import pathlib
import subprocess

import numpy as np

from .errors import LibraryError, error_for

#: The version of include/mamba2.h this package is written for (also the package's version).
__version__ = "0.1.0"
#: (major, minor) of the API this package is written for: the library's major must be the same,
#: its minor at least this one (minor versions only add functions).
API_VERSION = tuple(int(v) for v in __version__.split(".")[:2])
#: The file name the library's SONAME gives it: libmamba2.so.MAJOR.
SONAME = f"libmamba2.so.{API_VERSION[0]}"

#: MAMBA2_ERROR_MESSAGE_SIZE of include/mamba2.h.
ERROR_MESSAGE_SIZE = 1024


class Error(ctypes.Structure):
    """``mamba2_error``: the code and message a failing call writes."""

    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * ERROR_MESSAGE_SIZE)]


#: ``mamba2_progress_fn``: ctx, done, total, what.
PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_char_p)
#: ``mamba2_layer_hook``: ctx, layer, tensor, data [T, width], T, width.
LAYER_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                              ctypes.c_int, ctypes.c_int)


class BackendOptions(ctypes.Structure):
    """``mamba2_backend_options``: how a backend runs (all zero: the defaults)."""

    _fields_ = [
        ("n_threads", ctypes.c_int),
        ("weights", ctypes.c_char_p),
        ("precision", ctypes.c_char_p),
        ("gpu_state_bf16", ctypes.c_int),
        ("progress", PROGRESS_FN),
        ("progress_ctx", ctypes.c_void_p),
    ]


# The opaque handles, as distinct pointer types so that ctypes refuses a state where a model is expected.
class _Opaque(ctypes.Structure):
    _fields_ = []


ModelPtr = ctypes.POINTER(type("mamba2_model", (_Opaque,), {}))
BackendPtr = ctypes.POINTER(type("mamba2_backend", (_Opaque,), {}))
StatePtr = ctypes.POINTER(type("mamba2_state", (_Opaque,), {}))
TokenizerPtr = ctypes.POINTER(type("mamba2_tokenizer", (_Opaque,), {}))
SamplerPtr = ctypes.POINTER(type("mamba2_sampler", (_Opaque,), {}))


def _array(dtype):
    """A ctypes argument type for a C-contiguous numpy array of ``dtype``, or None (NULL)."""
    base = np.ctypeslib.ndpointer(dtype=dtype, flags="C_CONTIGUOUS")

    def from_param(cls, obj):
        return None if obj is None else base.from_param(obj)

    return type(f"{np.dtype(dtype).name}_array_or_null", (base,), {"from_param": classmethod(from_param)})


_f32, _i32 = _array(np.float32), _array(np.int32)
_int, _ll, _size = ctypes.c_int, ctypes.c_longlong, ctypes.c_size_t
_str, _err = ctypes.c_char_p, ctypes.POINTER(Error)
_ssd = [_int] * 5  # T, H, P, G, N
_ssd_arrays = [_f32] * 7  # x, dt, A, B, C, state, y

#: name: (restype, argtypes), in the order of include/mamba2.h.
SIGNATURES = {
    "mamba2_version": (_str, []),
    "mamba2_model_open": (ModelPtr, [_str, _err]),
    "mamba2_model_close": (None, [ModelPtr]),
    "mamba2_model_dim": (_int, [ModelPtr, _int]),
    "mamba2_model_n_params": (_ll, [ModelPtr]),
    "mamba2_model_state_bytes": (_ll, [ModelPtr]),
    "mamba2_model_dir": (_str, [ModelPtr]),
    "mamba2_config_sizes": (_int, [_str, ctypes.POINTER(_ll), ctypes.POINTER(_ll), _err]),
    "mamba2_backend_list": (_str, []),
    "mamba2_backend_open": (BackendPtr, [ModelPtr, _str, ctypes.POINTER(BackendOptions), _err]),
    "mamba2_backend_close": (None, [BackendPtr]),
    "mamba2_backend_name": (_str, [BackendPtr]),
    "mamba2_state_create": (StatePtr, [ModelPtr, _err]),
    "mamba2_state_destroy": (None, [StatePtr]),
    "mamba2_state_clear": (None, [StatePtr]),
    "mamba2_state_clone": (StatePtr, [StatePtr, _err]),
    "mamba2_state_position": (_ll, [StatePtr]),
    "mamba2_state_save_file": (_int, [StatePtr, _str, _err]),
    "mamba2_state_load_file": (_int, [StatePtr, _str, _err]),
    "mamba2_prefill": (_int, [BackendPtr, StatePtr, _i32, _int, _f32, _int, _err]),
    "mamba2_step": (_int, [BackendPtr, ctypes.POINTER(StatePtr), _i32, _int, _f32, _err]),
    "mamba2_logits_alloc": (ctypes.POINTER(ctypes.c_float), [BackendPtr, _size, _err]),
    "mamba2_logits_free": (None, [BackendPtr, ctypes.POINTER(ctypes.c_float)]),
    "mamba2_prefill_observed": (_int, [BackendPtr, StatePtr, _i32, _int, _f32, LAYER_HOOK, ctypes.c_void_p, _err]),
    "mamba2_hook_tensor_name": (_str, [_int]),
    "mamba2_tokenizer_open": (TokenizerPtr, [_str, _err]),
    "mamba2_tokenizer_close": (None, [TokenizerPtr]),
    "mamba2_tokenizer_n_vocab": (_int, [TokenizerPtr]),
    "mamba2_tokenizer_bos_id": (_int, [TokenizerPtr]),
    "mamba2_tokenizer_eos_id": (_int, [TokenizerPtr]),
    "mamba2_tokenize": (_int, [TokenizerPtr, _str, _size, _int, _i32, _size, ctypes.POINTER(_size), _err]),
    "mamba2_detokenize": (_int, [TokenizerPtr, _i32, _size, ctypes.POINTER(ctypes.c_char), _size,
                                 ctypes.POINTER(_size), _err]),
    "mamba2_sampler_create": (SamplerPtr, [_int, ctypes.c_float, _int, ctypes.c_float, ctypes.c_uint64, _err]),
    "mamba2_sampler_destroy": (None, [SamplerPtr]),
    "mamba2_sample": (ctypes.c_int32, [SamplerPtr, _f32]),
    "mamba2_ssd_recurrent": (_int, _ssd + _ssd_arrays + [_err]),
    "mamba2_ssd_quadratic": (_int, _ssd + _ssd_arrays + [_err]),
    "mamba2_ssd_chunked": (_int, _ssd + [_int] + _ssd_arrays + [_err]),
}


# ---- finding the library: each place says where it looked, and gives a path (or None)

def _from_environment():
    path = os.environ.get("MAMBA2_LIBRARY")
    return path, f"MAMBA2_LIBRARY={path}" if path else "MAMBA2_LIBRARY: not set"


def _from_pkg_config():
    try:
        run = subprocess.run(["pkg-config", "--variable=libdir", "mamba2"], capture_output=True, text=True)
    except OSError:
        return None, "pkg-config: not installed"
    if run.returncode != 0 or not run.stdout.strip():
        return None, f"pkg-config: no mamba2.pc on its path (PKG_CONFIG_PATH={os.environ.get('PKG_CONFIG_PATH', '')})"
    path = os.path.join(run.stdout.strip(), SONAME)
    return path, f"pkg-config: {path}"


def _from_system():
    name = ctypes.util.find_library("mamba2")
    return name, f'ctypes.util.find_library("mamba2"): {name}'


def checkout_root():
    """The repository this package sits in (the folder holding include/mamba2.h), or None when installed."""
    root = pathlib.Path(__file__).resolve().parents[2]
    return root if (root / "include" / "mamba2.h").is_file() else None


def _from_checkout():
    root = checkout_root()
    if root is None:
        return None, "the repository's build/lib/: the package is not in a checkout"
    path = str(root / "build" / "lib" / SONAME)
    return path, f"the repository's build folder: {path}"


PLACES = (_from_environment, _from_pkg_config, _from_system, _from_checkout)


def _open(path):
    """Load the library at ``path`` and check its version; raise LibraryError with the reason."""
    try:
        library = ctypes.CDLL(path)
        library.mamba2_version.restype = ctypes.c_char_p
        version = library.mamba2_version().decode()
    except (OSError, AttributeError) as e:
        raise LibraryError(str(e)) from None
    major, minor = (int(v) for v in version.split(".")[:2])
    if major != API_VERSION[0] or minor < API_VERSION[1]:
        raise LibraryError(f"version {version}, this package needs {API_VERSION[0]}.x with x >= {API_VERSION[1]}")
    for name, (restype, argtypes) in SIGNATURES.items():
        function = getattr(library, name)
        function.restype, function.argtypes = restype, argtypes
    return library


def find_and_load():
    """Find and load the library (see the module's documentation for where); raise LibraryError naming
    every place tried and why each failed when none gives a usable library."""
    tried = []
    for place in PLACES:
        path, where = place()
        if path:
            try:
                return _open(path), path
            except LibraryError as e:
                if place is _from_environment:  # an explicit choice: nothing else is tried
                    raise LibraryError(f"{where}: {e}") from None
                where += f" ({e})"
        tried.append(where)
    raise LibraryError("libmamba2 not found (build it with `make lib`, or `make install`); tried:\n  "
                       + "\n  ".join(tried))


_loaded = None


def lib():
    """The loaded library (found and loaded on the first call)."""
    global _loaded
    if _loaded is None:
        _loaded = find_and_load()
    return _loaded[0]


def library_path():
    """The path (or name) of the C library the package uses, loading it if needed."""
    lib()
    return _loaded[1]


def call(name, *args):
    """Call the C function ``name`` with ``args`` and a ``mamba2_error``; return its result.

    A failure (a non-zero status, or a NULL handle) raises the exception of its code with the C message.
    """
    err = Error()
    result = getattr(lib(), name)(*args, ctypes.byref(err))
    failed = result != 0 if isinstance(result, int) else not result
    if failed:
        message = err.message.decode("utf-8", "replace") or f"{name} failed without a message"
        raise error_for(err.code, message)
    return result


class CallbackGuard:
    """Wraps a Python function for a C callback, keeping the first exception it raises.

    An exception cannot travel through C: the wrapper stores it, C runs to its end, and
    ``reraise()`` raises it afterwards. The ctypes function object must stay referenced while C may
    call it; ``c_function`` is kept on this guard, which the caller keeps for the call.
    """

    def __init__(self, function, ctype, adapt):
        """``adapt(function, *c_arguments)`` calls ``function`` with the C arguments made Pythonic."""
        self.error = None

        def trampoline(*c_arguments):
            if self.error is None:
                try:
                    adapt(function, *c_arguments)
                except BaseException as e:  # noqa: B036 (re-raised by reraise())
                    self.error = e

        self.c_function = ctype(trampoline)

    def reraise(self):
        """Raise the exception the function raised, if it did."""
        if self.error is not None:
            raise self.error
