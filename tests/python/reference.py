"""What the tests check the package against, in numpy float64, written from include/mamba2.h and
notebooks-docs/design.md §2 without calling the C library: the SSD recurrence, one Mamba-2 layer step
by step, and a reader of safetensors files for the weights."""
import json
import struct

import numpy as np


def ssd_recurrence(x, dt, A, B, C, state):
    """S_t = exp(dt_t·A) S_{t−1} + dt_t x_t B_tᵀ, y_t = S_t C_t, one token at a time (head h reads
    group h // (H // G)); returns (y [T, H, P], final state [H, P, N])."""
    x, dt, A, B, C = (np.asarray(v, np.float64) for v in (x, dt, A, B, C))
    T, H, P = x.shape
    heads_per_group = H // B.shape[1]
    Bh, Ch = np.repeat(B, heads_per_group, axis=1), np.repeat(C, heads_per_group, axis=1)  # [T, H, N]
    S = np.array(state, np.float64)
    y = np.empty((T, H, P))
    for t in range(T):
        S = np.exp(dt[t] * A)[:, None, None] * S + (dt[t][:, None] * x[t])[:, :, None] * Bh[t][:, None, :]
        y[t] = np.einsum("hpn,hn->hp", S, Ch[t])
    return y, S


def read_safetensors(path):
    """Every tensor of a safetensors file as a float64 array (bf16, f16 and f32 are what checkpoints hold)."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        if info["dtype"] == "BF16":  # the upper 16 bits of a float32
            values = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            values = np.frombuffer(raw, {"F16": np.float16, "F32": np.float32}[info["dtype"]])
        tensors[name] = values.astype(np.float64).reshape(info["shape"])
    return tensors


def rms_norm(h, weight, eps, groups=1):
    """h / sqrt(mean(h²) + eps) · weight, the mean taken over each of ``groups`` equal runs of channels."""
    g = h.reshape(*h.shape[:-1], groups, -1)
    return (g / np.sqrt(np.mean(g * g, axis=-1, keepdims=True) + eps)).reshape(h.shape) * weight


def silu(v):
    return v / (1 + np.exp(-v))


def layer_steps(seen, w, cfg, dims):
    """Each tensor a layer shows to the hook, recomputed in float64 from the tensor before it as the
    hook saw it (so that each step is checked on its own): name -> array [T, width].

    Args:
        seen: the hook's tensors of the layer (name -> [T, width]), from a fresh state.
        w: the layer's weights (``mixer.in_proj.weight``, ...) without the ``backbone.layers.N.`` prefix.
        cfg: the checkpoint's config.json.
        dims: the model's sizes (d_inner, n_heads, head_dim, n_groups, d_state, conv_dim, d_conv).
    """
    eps = cfg["layer_norm_epsilon"]
    d_in, H, P, G, N = dims["d_inner"], dims["n_heads"], dims["head_dim"], dims["n_groups"], dims["d_state"]
    T, K = seen["input"].shape[0], dims["d_conv"]
    want = {"norm": rms_norm(seen["input"], w["norm.weight"], eps)}
    want["in_proj"] = seen["norm"] @ w["mixer.in_proj.weight"].T
    z, xBC, dt = np.split(seen["in_proj"].astype(np.float64), [d_in, d_in + dims["conv_dim"]], axis=1)
    padded = np.concatenate([np.zeros((K - 1, xBC.shape[1])), xBC])  # a fresh state: zeros before the first token
    kernel = w["mixer.conv1d.weight"][:, 0, :]  # [conv_dim, K]
    conv = sum(padded[k:k + T] * kernel[:, k] for k in range(K)) + w["mixer.conv1d.bias"]
    want["conv"] = silu(conv)
    softplus = np.logaddexp(0, dt + w["mixer.dt_bias"])
    low, high = cfg.get("time_step_limit", [0.0, float("inf")])
    if isinstance(high, dict):  # {"__float__": "Infinity"}, as transformers writes it
        high = float(high["__float__"])
    want["dt"] = np.clip(softplus, low, high)
    x, B, C = np.split(seen["conv"].astype(np.float64), [d_in, d_in + G * N], axis=1)
    A = -np.exp(w["mixer.A_log"])
    y, _ = ssd_recurrence(x.reshape(T, H, P), seen["dt"], A, B.reshape(T, G, N), C.reshape(T, G, N),
                          np.zeros((H, P, N)))
    want["ssd"] = y.reshape(T, d_in) + np.repeat(w["mixer.D"], P) * x
    want["gated_norm"] = rms_norm(seen["ssd"] * silu(z), w["mixer.norm.weight"], eps, groups=G)
    want["out_proj"] = seen["gated_norm"] @ w["mixer.out_proj.weight"].T
    want["output"] = seen["input"] + seen["out_proj"]
    return want


def rel_l2(got, want):
    """‖got − want‖ / ‖want‖."""
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))
