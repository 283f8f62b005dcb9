"""mamba2.ssd_recurrent / ssd_quadratic / ssd_chunked against the recurrence of include/mamba2.h
written in numpy float64 (reference.ssd_recurrence), and their checks of shapes before C is called."""
import numpy as np
import pytest

import mamba2
from reference import rel_l2, ssd_recurrence

FORMS = {
    "recurrent": mamba2.ssd_recurrent,
    "quadratic": mamba2.ssd_quadratic,
    "chunked": lambda *a, **k: mamba2.ssd_chunked(*a, chunk_size=16, **k),
}


def inputs(T, H, P, G, N, decay=(1.0, 16.0), seed=0):
    """x, dt, A, B, C and an initial state, as the C suite ssd draws them: dt log-uniform in
    [1e-3, 1e-1], −A uniform in ``decay``, B and C of unit scale, a non-zero state."""
    r = np.random.default_rng(seed)
    x = r.standard_normal((T, H, P)).astype(np.float32)
    dt = np.exp(r.uniform(np.log(1e-3), np.log(1e-1), (T, H))).astype(np.float32)
    A = (-r.uniform(*decay, H)).astype(np.float32)
    B = (r.standard_normal((T, G, N)) / np.sqrt(N)).astype(np.float32)
    C = (r.standard_normal((T, G, N)) / np.sqrt(N)).astype(np.float32)
    state = r.standard_normal((H, P, N)).astype(np.float32)
    return x, dt, A, B, C, state


CASES = {  # T, H, P, G, N, decay: T = 1, T < Q, T not a multiple of Q (4 chunks), G = 1 and G = H, weak decay
    "T=1": (1, 2, 4, 1, 8, (1.0, 16.0)),
    "T<Q": (7, 4, 8, 2, 16, (1.0, 16.0)),
    "4 chunks, G=2": (57, 4, 8, 2, 16, (1.0, 16.0)),
    "G=H": (40, 4, 4, 4, 8, (1.0, 16.0)),
    "weak decay": (50, 2, 8, 1, 16, (0.01, 0.1)),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", CASES)
def test_forms_match_float64_recurrence(form, case):
    *sizes, decay = CASES[case]
    x, dt, A, B, C, state = inputs(*sizes, decay=decay)
    given = [a.copy() for a in (x, dt, A, B, C, state)]
    y, final = FORMS[form](x, dt, A, B, C, state)
    want_y, want_state = ssd_recurrence(x, dt, A, B, C, state)
    assert y.shape == x.shape and y.dtype == np.float32 and final.shape == state.shape
    assert rel_l2(y, want_y) < 1e-6
    assert rel_l2(final, want_state) < 1e-6
    for before, after in zip(given, (x, dt, A, B, C, state)):  # the inputs are left as they were
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("form", FORMS)
def test_state_carries_over(form):
    """Two calls, the second starting from the first's final state, equal one call (no state: zeros)."""
    x, dt, A, B, C, _ = inputs(30, 4, 8, 2, 16)
    whole, whole_state = FORMS[form](x, dt, A, B, C)
    first, mid = FORMS[form](x[:13], dt[:13], A, B[:13], C[:13], np.zeros((4, 8, 16)))
    second, end = FORMS[form](x[13:], dt[13:], A, B[13:], C[13:], mid)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(end, whole_state, rtol=1e-5, atol=1e-6)


def test_float64_inputs_are_converted():
    x, dt, A, B, C, state = inputs(20, 2, 4, 1, 8)
    y32, _ = mamba2.ssd_chunked(x, dt, A, B, C, state, chunk_size=8)
    y64, _ = mamba2.ssd_chunked(*(a.astype(np.float64) for a in (x, dt, A, B, C, state)), chunk_size=8)
    np.testing.assert_array_equal(y64, y32)


def _bad(what):
    """Inputs of T = 6, H = 4, P = 2, G = 2, N = 3 with one thing wrong."""
    x, dt, A, B, C, state = inputs(6, 4, 2, 2, 3)
    wrong = {
        "x 2-D": dict(x=x[0]),
        "dt of other T": dict(dt=dt[:5]),
        "A of other H": dict(A=A[:3]),
        "C of other N": dict(C=C[:, :, :2]),
        "H = 3, G = 2": dict(x=x[:, :3], dt=dt[:, :3], A=A[:3], state=state[:3]),
        "T = 0": dict(x=x[:0], dt=dt[:0], B=B[:0], C=C[:0]),
        "state of other P": dict(state=state[:, :1]),
    }[what]
    arrays = dict(x=x, dt=dt, A=A, B=B, C=C, state=state)
    arrays.update(wrong)
    return arrays


@pytest.mark.parametrize("what, message", [
    ("x 2-D", "x must have 3 dimension"),
    ("dt of other T", r"dt has shape \(5, 4\), expected \(6, 4\)"),
    ("A of other H", r"A has shape \(3,\), expected \(4,\)"),
    ("C of other N", r"C has shape \(6, 2, 2\), expected \(6, 2, 3\)"),
    ("H = 3, G = 2", "H = 3 heads do not split into G = 2 groups"),
    ("T = 0", "every size must be at least 1: T=0"),
    ("state of other P", r"state has shape \(4, 1, 3\), expected \(4, 2, 3\)"),
])
@pytest.mark.parametrize("form", FORMS)
def test_bad_shapes_raise_value_error_before_c(form, what, message):
    with pytest.raises(ValueError, match=message) as raised:
        FORMS[form](**_bad(what))
    assert not isinstance(raised.value, mamba2.Mamba2Error)  # refused in Python, C never saw it


def test_chunk_size_must_be_positive():
    x, dt, A, B, C, _ = inputs(6, 2, 2, 1, 3)
    for bad in (0, -4, 2.5):
        with pytest.raises(ValueError, match="chunk_size"):
            mamba2.ssd_chunked(x, dt, A, B, C, chunk_size=bad)
