"""The demo model through the package: its sizes, tokenizer, the greedy continuation of the C suite
demo_model (transformers' tokens, reproduced token for token), batched steps, states, sampling."""
import numpy as np
import pytest

import mamba2
from conftest import CPU_BACKENDS, DEMO


def test_sizes_are_the_config(model, config):
    assert (model.vocab_size, model.n_layer, model.d_model) == (config["vocab_size"], config["num_hidden_layers"],
                                                                config["hidden_size"])
    assert (model.n_heads, model.head_dim, model.d_state) == (config["num_heads"], config["head_dim"],
                                                              config["state_size"])
    assert (model.n_groups, model.d_conv, model.chunk_size) == (config["n_groups"], config["conv_kernel"],
                                                                config["chunk_size"])
    H, P, G, N, K = model.n_heads, model.head_dim, model.n_groups, model.d_state, model.d_conv
    assert model.d_inner == H * P
    assert model.conv_dim == H * P + 2 * G * N
    assert model.d_in_proj == 2 * H * P + 2 * G * N + H
    assert model.state_bytes == 4 * model.n_layer * (model.conv_dim * (K - 1) + H * P * N)
    assert model.n_params == 5_703_152  # the model card's 5.7 M (tied lm_head counted once)
    assert model.path == str(DEMO)


def test_tokenizer_matches_transformers(model, greedy, config):
    tok = model.tokenizer
    ids = tok.encode(greedy["prompt"])
    assert ids.dtype == np.int32
    assert ids.tolist() == greedy["prompt_ids"]
    assert tok.encode(greedy["prompt"], add_bos=False).tolist() == greedy["prompt_ids"][1:]
    assert tok.decode(greedy["greedy_ids"]) == greedy["greedy_text"]
    assert (tok.bos_id, tok.eos_id) == (config["bos_token_id"], config["eos_token_id"])
    assert tok.n_vocab == model.vocab_size


@pytest.mark.parametrize("case", ["main", "confident"])
def test_greedy_continuation(model, greedy, case):
    fixture = greedy if case == "main" else greedy["confident"]
    out = model.generate(fixture["prompt_ids"], len(fixture["greedy_ids"]))
    assert out.dtype == np.int32
    assert out.tolist() == fixture["greedy_ids"]


def test_generate_text(model, greedy):
    assert model.generate(greedy["prompt"], 64) == greedy["greedy_text"]


def test_one_prefill_of_every_position(model, greedy):
    """The argmax at each position of one prefill of prompt + continuation is the next token."""
    ids = greedy["prompt_ids"] + greedy["greedy_ids"][:-1]
    logits = model.prefill(ids, all_positions=True)
    assert logits.shape == (len(ids), model.vocab_size) and logits.dtype == np.float32
    assert logits.argmax(axis=1)[len(greedy["prompt_ids"]) - 1:].tolist() == greedy["greedy_ids"]
    last = model.prefill(ids)
    assert last.shape == (model.vocab_size,)
    np.testing.assert_allclose(last, logits[-1], rtol=1e-5, atol=1e-5)


def test_batched_step_equals_one_sequence_at_a_time(model, greedy):
    prompts = [greedy["prompt_ids"], greedy["confident"]["prompt_ids"]]
    states = [mamba2.State(model) for _ in prompts]
    first = [int(model.prefill(p, s).argmax()) for p, s in zip(prompts, states)]
    alone = [model.step([s.clone()], [t]) for s, t in zip(states, first)]
    together = model.step(states, first)
    assert together.shape == (2, model.vocab_size)
    for b in range(2):
        np.testing.assert_allclose(together[b], alone[b][0], rtol=1e-5, atol=1e-5)
    assert [s.position for s in states] == [len(p) + 1 for p in prompts]


def _continue_greedy(model, state, logits, n):
    """n greedy steps from a state and the logits that came with it; the logits of each step."""
    out = []
    for _ in range(n):
        logits = model.step([state], [int(logits.argmax())])[0]
        out.append(logits)
    return np.array(out)


def test_state_save_load_clone_clear(model, greedy, tmp_path):
    ids = greedy["prompt_ids"]
    live = mamba2.State(model)
    assert live.position == 0
    logits = model.prefill(ids, live)
    assert live.position == len(ids)
    live.save(tmp_path / "prompt.state")
    copy = live.clone()
    expected = _continue_greedy(model, live, logits, 8)
    assert live.position == len(ids) + 8

    with mamba2.State(model) as loaded:
        loaded.load(tmp_path / "prompt.state")
        assert loaded.position == len(ids)
        np.testing.assert_array_equal(_continue_greedy(model, loaded, logits, 8), expected)
    np.testing.assert_array_equal(_continue_greedy(model, copy, logits, 8), expected)

    live.clear()
    assert live.position == 0
    np.testing.assert_array_equal(model.prefill(ids, live), logits)


def test_a_state_moves_between_backends(greedy):
    """A state made by one backend is continued by another (the state is the same on every backend)."""
    first, second = CPU_BACKENDS[0], CPU_BACKENDS[-1]  # ref and cpu
    with mamba2.Model(DEMO, backend=first, threads=1) as a, mamba2.Model(DEMO, backend=second, threads=1) as b:
        state = mamba2.State(a)
        logits = a.prefill(greedy["prompt_ids"], state)
        on_b = b.step([state.clone()], [int(logits.argmax())])
        on_a = a.step([state], [int(logits.argmax())])
    np.testing.assert_allclose(on_b, on_a, rtol=1e-3, atol=1e-3)


def test_sampling(model, greedy):
    """A seed draws the same tokens every time; top_k = 3 draws only among the 3 most probable."""
    ids = greedy["prompt_ids"]
    settings = dict(temperature=1.0, top_k=3, seed=7)
    first = model.generate(ids, 24, **settings)
    np.testing.assert_array_equal(model.generate(ids, 24, **settings), first)
    assert first.tolist() != greedy["greedy_ids"][:24]  # sampled at temperature 1, not the argmax every time
    logits = model.prefill(ids)
    top3 = set(np.argsort(logits)[-3:].tolist())
    with mamba2.Sampler(model.vocab_size, temperature=1.0, top_k=3, seed=1) as sampler:
        draws = {sampler.sample(logits) for _ in range(50)}
        assert draws <= top3 and len(draws) > 1
        with pytest.raises(ValueError, match="logits of shape"):
            sampler.sample(logits[:-1])


def test_generate_stops_at_eos(model, greedy):
    """eos_id ends the generation (the id itself is not returned)."""
    stop = greedy["greedy_ids"][5]  # its first appearance is at position 5: the continuation ends before it
    out = model.generate(greedy["prompt_ids"], 64, eos_id=stop)
    assert out.tolist() == greedy["greedy_ids"][:greedy["greedy_ids"].index(stop)]


def test_backend_choice_and_options(greedy):
    with mamba2.Model(DEMO) as auto:  # the first of gpu, cpu, ref that is built in and starts
        assert auto.backend in mamba2.backends()
    calls = []
    confident = greedy["confident"]
    with mamba2.Model(DEMO, backend="cpu", threads=1, weights="q8",
                      progress=lambda done, total, what: calls.append((done, total, what))) as q8:
        assert q8.backend == "cpu"
        # the C suite's rule: with q8 weights the "confident" continuation is reproduced token for token
        assert q8.generate(confident["prompt_ids"], 64).tolist() == confident["greedy_ids"]
    assert len(calls) > 1 and calls[-1][0] == calls[-1][1] and calls[-1][2] == "quantizing weights"
    with mamba2.Model(DEMO, backend="cpu", threads=1, precision="fast") as fast:
        assert fast.generate(confident["prompt_ids"], 16).tolist() == confident["greedy_ids"][:16]


def test_state_arrays_are_the_recurrence(ref_model, config):
    """State.arrays() gives the SSM state the library computed: after one token from a zero state,
    h = e^{Δ A}·0 + Δ x Bᵀ, recomputed from the layer hook's tensors and read_tensors()' A_log."""
    model = ref_model
    with mamba2.State(model) as state:
        conv, ssm = state.arrays()
        assert conv.shape == (model.n_layer, model.conv_dim, model.d_conv - 1) and not conv.any()
        assert ssm.shape == (model.n_layer, model.n_heads, model.head_dim, model.d_state) and not ssm.any()
        _, layers = model.prefill_observed([model.tokenizer.bos_id], state)
        conv, ssm = state.arrays()
    H, P, N, G = model.n_heads, model.head_dim, model.d_state, model.n_groups
    for layer in (0, model.n_layer - 1):
        xbc, dt = layers[layer]["conv"][0], layers[layer]["dt"][0]
        x = xbc[:H * P].reshape(H, P)
        B = xbc[H * P:H * P + G * N].reshape(G, N)
        want = dt[:, None, None] * x[:, :, None] * B[np.arange(H) // (H // G)][:, None, :]
        np.testing.assert_allclose(ssm[layer], want, rtol=1e-5, atol=1e-7)
        assert conv[layer, :, -1].tolist() != [0.0] * model.conv_dim  # the token's input is in the window
    A_log = mamba2.read_tensors(DEMO, [f"backbone.layers.{l}.mixer.A_log" for l in range(model.n_layer)])
    assert len(A_log) == config["num_hidden_layers"]
    assert all(a.shape == (config["num_heads"],) and np.isfinite(a).all() for a in A_log.values())


def test_read_tensors_dtypes(tmp_path):
    import json
    import struct
    values = np.array([[1.5, -2.0], [0.25, 3.0]], np.float32)
    blobs = {"F32": values.tobytes(), "F16": values.astype(np.float16).tobytes(),
             "BF16": (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()}
    header, offset = {}, 0
    for dtype, blob in blobs.items():
        header[f"t_{dtype}"] = {"dtype": dtype, "shape": [2, 2], "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
    text = json.dumps(header).encode()
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs.values()))
    tensors = mamba2.read_tensors(tmp_path)
    for dtype in blobs:
        np.testing.assert_array_equal(tensors[f"t_{dtype}"], values)
    with pytest.raises(KeyError):
        mamba2.read_tensors(tmp_path / "x.safetensors", ["nope"])
