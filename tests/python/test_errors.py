"""Errors of the C library come out as exceptions of the class of their code, with the C message as
their text (the messages below are the library's, src/mamba2_*.c)."""
import numpy as np
import pytest

import mamba2
from conftest import DEMO


def test_missing_directory(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(mamba2.FileError) as raised:
        mamba2.Model(missing)
    assert str(raised.value) == f"{missing}: No such file or directory"
    assert raised.value.code == 3 and isinstance(raised.value, OSError)


def test_directory_without_a_checkpoint(tmp_path):
    with pytest.raises(mamba2.FormatError, match="config.json") as raised:
        mamba2.Model(tmp_path)
    assert raised.value.code == 4 and isinstance(raised.value, ValueError)


def test_bad_token_id(ref_model):
    V = ref_model.vocab_size
    with pytest.raises(mamba2.TokenError) as raised:
        ref_model.prefill([1, V, 2])
    assert str(raised.value) == f"token id {V} of position 1 is outside the vocabulary [0, {V})"
    with pytest.raises(mamba2.TokenError, match="token id -1 of sequence 1"):
        ref_model.step([mamba2.State(ref_model), mamba2.State(ref_model)], [5, -1])
    with pytest.raises(mamba2.TokenError, match=f"token id {V + 7} at position 0"):
        ref_model.tokenizer.decode([V + 7])


def test_no_tokens(ref_model):
    state = mamba2.State(ref_model)
    with pytest.raises(mamba2.ArgumentError) as raised:
        ref_model.prefill([], state)
    assert str(raised.value) == "T = 0: a prefill needs at least one token"
    assert state.position == 0  # unchanged on failure
    with pytest.raises(mamba2.ArgumentError, match="T = 0"):
        ref_model.prefill_observed(np.zeros(0, np.int64))


def test_ids_that_are_not_32_bit_integers(ref_model):
    """Refused in Python: cast to int32 they would wrap around to valid ids."""
    with pytest.raises(ValueError, match="fit in 32 bits"):
        ref_model.prefill([2**32 + 5])
    with pytest.raises(ValueError, match="integers"):
        ref_model.prefill([1.5, 2.0])


def test_backend_options():
    with pytest.raises(mamba2.ArgumentError) as raised:
        mamba2.Model(DEMO, backend="tpu")
    assert str(raised.value) == "unknown backend 'tpu': expected ref, cpu, gpu or auto"
    with pytest.raises(mamba2.ArgumentError, match="weights 'q2': expected stored, q8 or q4"):
        mamba2.Model(DEMO, backend="cpu", weights="q2")
    with pytest.raises(mamba2.ArgumentError, match="n_threads must be >= 0"):
        mamba2.Model(DEMO, backend="cpu", threads=-1)


def test_progress_function_error_is_raised():
    def fail(done, total, what):
        raise RuntimeError(f"stopped while {what}")

    with pytest.raises(RuntimeError, match="stopped while quantizing weights"):
        mamba2.Model(DEMO, backend="cpu", weights="q4", progress=fail)


def test_state_files(ref_model, tmp_path):
    state = mamba2.State(ref_model)
    with pytest.raises(mamba2.FileError, match="No such file or directory"):
        state.load(tmp_path / "missing.state")
    (tmp_path / "junk.state").write_bytes(b"not a state file at all" * 10)
    with pytest.raises(mamba2.FormatError):
        state.load(tmp_path / "junk.state")
    with pytest.raises(mamba2.FileError):
        state.save(tmp_path / "no-such-dir" / "x.state")


def test_one_state_twice_in_a_step(ref_model):
    state = mamba2.State(ref_model)
    with pytest.raises(mamba2.ArgumentError, match="sequences 0 and 1 share one state"):
        ref_model.step([state, state], [1, 2])
    with pytest.raises(ValueError, match="2 states but 1 tokens"):
        ref_model.step([state, mamba2.State(ref_model)], [1])


def test_sampler_settings():
    with pytest.raises(mamba2.ArgumentError):
        mamba2.Sampler(16, temperature=-1.0)
    with pytest.raises(mamba2.ArgumentError, match="n_vocab = 0"):
        mamba2.Sampler(0)


def test_configuration_text():
    with pytest.raises(mamba2.FormatError):
        mamba2.config_sizes('{"hidden_size": -3}')
    n_params, state_bytes = mamba2.config_sizes((DEMO / "config.json").read_text())
    assert (n_params, state_bytes) == (5_703_152, 1_402_880)


def test_closed_handles():
    model = mamba2.Model(DEMO, backend="ref")
    state = mamba2.State(model)
    model.close()
    model.close()  # a second close does nothing
    with pytest.raises(ValueError, match="this Model is closed"):
        model.prefill([1])
    with pytest.raises(ValueError, match="this Model is closed"):
        _ = model.vocab_size
    assert state.position == 0  # a state keeps its model's memory alive in C
    state.close()
    with pytest.raises(ValueError, match="this State is closed"):
        state.clear()
