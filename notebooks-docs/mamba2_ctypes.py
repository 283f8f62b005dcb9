"""The project's C reference, loaded into Python with ctypes (for the notebooks of notebooks-docs/).

    import mamba2_ctypes as m2
    y, state = m2.ssd("chunked", x, dt, A, B, C, state0, Q=16)
    cfg = m2.config_summary(json_text)          # parameters and state bytes, computed by the C code

`load()` runs `make lib` in the repository root first (a no-op when build/lib/libmamba2.so is up to
date), so the library always matches the sources; only the public API (include/mamba2.h) is
called. Shapes follow ref/ssd.h:
x [T, H, P], dt [T, H], A [H], B and C [T, G, N], state [H, P, N], all float32.
"""
import ctypes
import os
import pathlib
import subprocess

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the repository root
FIGURES = ROOT / "notebooks-docs" / "figures"
RESULTS = pathlib.Path(os.environ.get("MAMBA2_RESULTS", ROOT / "results"))  # benchmark JSON files
LIBRARY = ROOT / "build" / "lib" / "libmamba2.so"

_lib = None


class Error(ctypes.Structure):
    """include/mamba2.h: mamba2_error, filled by every call that can fail."""

    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 1024)]


def load():
    """Build (if needed) and load build/lib/libmamba2.so; declare the signatures used here."""
    global _lib
    if _lib is not None:
        return _lib
    subprocess.run(["make", "-s", "-C", str(ROOT), "lib"], check=True)
    lib = ctypes.CDLL(str(LIBRARY))
    f32 = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
    sizes = [ctypes.c_int] * 5  # T, H, P, G, N
    arrays = [f32, f32, f32, f32, f32, f32, f32]  # x, dt, A, B, C, state, y
    err = ctypes.POINTER(Error)
    lib.mamba2_ssd_recurrent.argtypes = sizes + arrays + [err]
    lib.mamba2_ssd_quadratic.argtypes = sizes + arrays + [err]
    lib.mamba2_ssd_chunked.argtypes = sizes + [ctypes.c_int] + arrays + [err]
    for f in (lib.mamba2_ssd_recurrent, lib.mamba2_ssd_quadratic, lib.mamba2_ssd_chunked):
        f.restype = ctypes.c_int
    ll = ctypes.POINTER(ctypes.c_longlong)
    lib.mamba2_config_sizes.argtypes = [ctypes.c_char_p, ll, ll, err]
    lib.mamba2_config_sizes.restype = ctypes.c_int
    _lib = lib
    return lib


def ssd(form, x, dt, A, B, C, state, Q=64):
    """Run one SSD form of ref/ssd.c ("recurrent", "quadratic" or "chunked").

    Returns (y [T, H, P], final state [H, P, N]); the inputs are left as they are.
    """
    lib = load()
    x, dt, A, B, C = (np.ascontiguousarray(v, dtype=np.float32) for v in (x, dt, A, B, C))
    T, H, P = x.shape
    G, N = B.shape[1:]
    state = np.array(state, dtype=np.float32, order="C")  # a copy: the C code updates it in place
    y = np.empty_like(x)
    err = Error()
    if form == "recurrent":
        rc = lib.mamba2_ssd_recurrent(T, H, P, G, N, x, dt, A, B, C, state, y, ctypes.byref(err))
    elif form == "quadratic":
        rc = lib.mamba2_ssd_quadratic(T, H, P, G, N, x, dt, A, B, C, state, y, ctypes.byref(err))
    elif form == "chunked":
        rc = lib.mamba2_ssd_chunked(T, H, P, G, N, Q, x, dt, A, B, C, state, y, ctypes.byref(err))
    else:
        raise ValueError(f"unknown SSD form {form!r}")
    if rc:
        raise RuntimeError(f"ssd_{form}: {err.message.decode()}")
    return y, state


def config_summary(json_text):
    """Parameters and state bytes per sequence of a config.json text, computed by the C code (ref/config.c)."""
    lib = load()
    params, state_bytes, err = ctypes.c_longlong(), ctypes.c_longlong(), Error()
    if lib.mamba2_config_sizes(json_text.encode(), ctypes.byref(params), ctypes.byref(state_bytes), ctypes.byref(err)):
        raise ValueError(err.message.decode())
    return {"params": params.value, "state_bytes": state_bytes.value}


def save_figure(fig, name):
    """Save the figure as notebooks-docs/figures/NAME.png (the guides show these files)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    print("saved", path.relative_to(ROOT))
    return path
