"""The layer hook (Model.prefill_observed): which tensors each backend shows and their shapes, that
they chain (one layer's output is the next one's input), that the run is a plain prefill, and, on the
reference, that every tensor is what include/mamba2.h says it is (recomputed in numpy from the
checkpoint's weights, through the final norm and lm_head to the logits)."""
import numpy as np
import pytest

import mamba2
import reference
from conftest import DEMO

NAMES = ["input", "norm", "in_proj", "conv", "dt", "ssd", "gated_norm", "out_proj", "output"]


def widths(m):
    """Values per token of each tensor (include/mamba2.h, mamba2_hook_tensor)."""
    return {"input": m.d_model, "norm": m.d_model, "in_proj": m.d_in_proj, "conv": m.conv_dim, "dt": m.n_heads,
            "ssd": m.d_inner, "gated_norm": m.d_inner, "out_proj": m.d_model, "output": m.d_model}


def test_tensors_shown_and_their_shapes(model, greedy):
    ids = greedy["prompt_ids"]
    logits, layers = model.prefill_observed(ids)
    shown = NAMES if model.backend == "ref" else ["input", "output"]
    assert len(layers) == model.n_layer
    for tensors in layers:
        assert list(tensors) == shown  # in the order a layer makes them
        for name, array in tensors.items():
            assert array.shape == (len(ids), widths(model)[name]) and array.dtype == np.float32
    for below, above in zip(layers, layers[1:]):
        np.testing.assert_array_equal(below["output"], above["input"])


def test_observed_run_is_a_prefill(model, greedy):
    """Same logits as a plain prefill of every position, and the state advanced the same way."""
    ids = greedy["prompt_ids"]
    plain_state, observed_state = mamba2.State(model), mamba2.State(model)
    plain = model.prefill(ids, plain_state, all_positions=True)
    observed, _ = model.prefill_observed(ids, observed_state)
    np.testing.assert_allclose(observed, plain, rtol=1e-5, atol=1e-5)
    assert observed_state.position == plain_state.position == len(ids)
    next_token = [greedy["greedy_ids"][0]]
    np.testing.assert_allclose(model.step([observed_state], next_token), model.step([plain_state], next_token),
                               rtol=1e-5, atol=1e-5)


def test_hook_function(model, greedy):
    """A hook function sees the tensors as they come, layer by layer; what it raises is raised after."""
    seen = []
    logits, layers = model.prefill_observed(greedy["prompt_ids"][:4], hook=lambda l, name, a: seen.append((l, name)))
    assert layers is None and logits.shape == (4, model.vocab_size)
    assert [layer for layer, _ in seen] == sorted(layer for layer, _ in seen)
    assert seen[0] == (0, "input") and seen[-1] == (model.n_layer - 1, "output")

    def fail(layer, name, array):
        raise KeyError(f"stop at layer {layer}")

    with pytest.raises(KeyError, match="stop at layer 0"):
        model.prefill_observed([1, 2, 3], hook=fail)


def test_reference_tensors_recomputed_from_the_weights(ref_model, greedy, config):
    ids = greedy["prompt_ids"] + greedy["greedy_ids"][:8]
    logits, layers = ref_model.prefill_observed(ids)
    weights = reference.read_safetensors(DEMO / "model.safetensors")
    dims = {k: getattr(ref_model, k) for k in mamba2.model.DIMS}
    for l, seen in enumerate(layers):
        prefix = f"backbone.layers.{l}."
        w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        for name, want in reference.layer_steps(seen, w, config, dims).items():
            assert reference.rel_l2(seen[name], want) < 2e-6, f"layer {l} {name}"
    # the last layer's output, through the final norm and the (tied) lm_head, is the logits
    final = reference.rms_norm(layers[-1]["output"].astype(np.float64), weights["backbone.norm_f.weight"],
                               config["layer_norm_epsilon"])
    assert reference.rel_l2(logits, final @ weights["backbone.embeddings.weight"].T) < 2e-6
    # and the first layer's input is the embedding of the tokens
    np.testing.assert_array_equal(layers[0]["input"], weights["backbone.embeddings.weight"][ids])
