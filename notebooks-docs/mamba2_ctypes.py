"""The project's C reference, loaded into Python with ctypes (for the notebooks of notebooks-docs/).

    import mamba2_ctypes as m2
    y, state = m2.ssd("chunked", x, dt, A, B, C, state0, Q=16)
    cfg = m2.config_summary(json_text)          # parameters and state bytes, computed by the C code

`load()` runs `make lib` in the repository root first (a no-op when build/libmamba2.so is up to
date), so the library always matches the sources. Shapes follow ref/ssd.h:
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
LIBRARY = ROOT / "build" / "libmamba2.so"

_lib = None


class SSDDims(ctypes.Structure):
    """ref/ssd.h: the sizes of one SSD call, passed by value."""

    _fields_ = [("T", ctypes.c_int), ("H", ctypes.c_int), ("P", ctypes.c_int), ("G", ctypes.c_int),
                ("N", ctypes.c_int)]


def load():
    """Build (if needed) and load build/libmamba2.so; declare the signatures used here."""
    global _lib
    if _lib is not None:
        return _lib
    subprocess.run(["make", "-s", "-C", str(ROOT), "lib"], check=True)
    lib = ctypes.CDLL(str(LIBRARY))
    f32 = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
    ssd_args = [f32, f32, f32, f32, f32, f32, f32]  # x, dt, A, B, C, state, y
    lib.ssd_recurrent.argtypes = [SSDDims] + ssd_args
    lib.ssd_recurrent.restype = None
    lib.ssd_quadratic.argtypes = [SSDDims] + ssd_args
    lib.ssd_quadratic.restype = ctypes.c_int
    lib.ssd_chunked.argtypes = [SSDDims, ctypes.c_int] + ssd_args
    lib.ssd_chunked.restype = ctypes.c_int
    # The config and error structs are used only through pointers: opaque buffers larger than both.
    lib.mamba2_config_parse.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.mamba2_config_parse.restype = ctypes.c_int
    lib.mamba2_config_param_count.argtypes = [ctypes.c_void_p]
    lib.mamba2_config_param_count.restype = ctypes.c_longlong
    lib.mamba2_config_state_bytes.argtypes = [ctypes.c_void_p]
    lib.mamba2_config_state_bytes.restype = ctypes.c_longlong
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
    dims = SSDDims(T, H, P, G, N)
    if form == "recurrent":
        lib.ssd_recurrent(dims, x, dt, A, B, C, state, y)
    elif form == "quadratic":
        if lib.ssd_quadratic(dims, x, dt, A, B, C, state, y):
            raise MemoryError("ssd_quadratic: the T x T mask could not be allocated")
    elif form == "chunked":
        if lib.ssd_chunked(dims, Q, x, dt, A, B, C, state, y):
            raise MemoryError("ssd_chunked: the chunk states could not be allocated")
    else:
        raise ValueError(f"unknown SSD form {form!r}")
    return y, state


def config_summary(json_text, source="config.json"):
    """Parse a config.json text with the C code (model/config.c): parameters and state bytes per sequence."""
    lib = load()
    cfg = ctypes.create_string_buffer(4096)
    err = ctypes.create_string_buffer(4096)
    if lib.mamba2_config_parse(json_text.encode(), source.encode(), cfg, err):
        raise ValueError(err.value.decode())
    return {"params": lib.mamba2_config_param_count(cfg), "state_bytes": lib.mamba2_config_state_bytes(cfg)}


def save_figure(fig, name):
    """Save the figure as notebooks-docs/figures/NAME.png (the guides show these files)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    print("saved", path.relative_to(ROOT))
    return path
