"""The SSD layer in its three forms (ref/ssd.c through include/mamba2.h), on numpy arrays.

For checking one's own SSD kernel against the reference::

    y_ref, state_ref = mamba2.ssd_chunked(x, dt, A, B, C, state0, chunk_size=64)
    y, state = my_kernel(x, dt, A, B, C, state0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)

All three compute, for one sequence of T tokens, H heads of P channels and G groups of
N-dimensional B and C (head h reads group h // (H // G)):

    S_t = exp(dt_t·A) S_{t−1} + dt_t x_t B_tᵀ,    y_t = S_t C_t

starting from ``state`` (zeros when None) and returning the final state. The D·x skip connection
is not part of it (the model adds it). Sums are accumulated in double precision; the inputs are
converted to float32 first. Shapes (row-major):

- x [T, H, P]; dt [T, H] (after softplus and clamp); A [H] (negative: −exp(A_log));
- B and C [T, G, N]; state [H, P, N]; y [T, H, P].
"""
import numpy as np

from ._library import call


def _float32(name, array, ndim):
    a = np.ascontiguousarray(array, dtype=np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    return a


def _run(function, x, dt, A, B, C, state, *chunk_size):
    """Check the shapes, then call the C form ``function``; returns (y, final state)."""
    x, dt, A = _float32("x", x, 3), _float32("dt", dt, 2), _float32("A", A, 1)
    B, C = _float32("B", B, 3), _float32("C", C, 3)
    T, H, P = x.shape
    G, N = B.shape[1:]
    expected = {"dt": ((T, H), dt), "A": ((H,), A), "B": ((T, G, N), B), "C": ((T, G, N), C)}
    for name, (shape, array) in expected.items():
        if array.shape != shape:
            raise ValueError(f"{name} has shape {array.shape}, expected {shape} (from x [T, H, P] = {x.shape} "
                             f"and B [T, G, N] = {B.shape})")
    if min(T, H, P, G, N) < 1:
        raise ValueError(f"every size must be at least 1: T={T} H={H} P={P} G={G} N={N}")
    if H % G:
        raise ValueError(f"H = {H} heads do not split into G = {G} groups")
    if state is None:
        state = np.zeros((H, P, N), np.float32)
    else:  # a copy: the C function overwrites it with the final state
        state = np.array(state, dtype=np.float32, order="C")
        if state.shape != (H, P, N):
            raise ValueError(f"state has shape {state.shape}, expected {(H, P, N)}")
    y = np.empty_like(x)
    call(function, T, H, P, G, N, *chunk_size, x, dt, A, B, C, state, y)
    return y, state


def ssd_recurrent(x, dt, A, B, C, state=None):
    """The recurrence, one token at a time: O(T) work (``mamba2_ssd_recurrent``).

    Args:
        x, dt, A, B, C: the inputs (see the module's documentation for shapes).
        state: [H, P, N] initial state (not modified), or None for zeros.

    Returns:
        ``(y, final_state)``: float32 [T, H, P] and [H, P, N].

    Raises:
        ValueError: shapes that do not fit together, a size of 0, H not a multiple of G.
    """
    return _run("mamba2_ssd_recurrent", x, dt, A, B, C, state)


def ssd_quadratic(x, dt, A, B, C, state=None):
    """The quadratic (masked dual) form ``Y = (L ∘ C Bᵀ) X``, L[t][s] = exp(a_{s+1} + … + a_t) for
    s ≤ t (a = dt·A, X = dt·x): O(T²) work and memory (``mamba2_ssd_quadratic``).

    Arguments, result and exceptions as ssd_recurrent(); OutOfMemoryError when the T×T mask does not fit.
    """
    return _run("mamba2_ssd_quadratic", x, dt, A, B, C, state)


def ssd_chunked(x, dt, A, B, C, state=None, chunk_size=64):
    """The chunked SSD algorithm: the quadratic form inside chunks of ``chunk_size`` tokens, the
    recurrence between chunks; T need not be a multiple of the chunk size (``mamba2_ssd_chunked``).

    Arguments, result and exceptions as ssd_recurrent(), plus ``chunk_size`` (≥ 1; the model's
    is ``Model.chunk_size``).
    """
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size = {chunk_size}: must be an integer >= 1")
    return _run("mamba2_ssd_chunked", x, dt, A, B, C, state, int(chunk_size))
