#!/usr/bin/env python3
"""Golden fixtures for the Mamba-2 C engines, made by an outside oracle.

    python3 data/make_fixtures.py [--out DIR] [--only NAME ...]

Writes data/fixtures/<name>/ for every fixture in FIXTURES below: the checkpoint exactly as
Hugging Face lays it out (config.json, model.safetensors or model.safetensors.index.json +
model-0000k-of-0000n.safetensors), logits.f32 (T x V little-endian float32, every position of
`tokens`) and fixture.json (tokens, greedy continuation, provenance, measured cross-check).

The oracle is Hugging Face transformers' Mamba2ForCausalLM in fp32 on the CPU, with two
deliberate interventions, explained here once:

1. Every layer's `mixer.norm` is REPLACED by GroupedGatedRMSNorm below (same weight):
   y <- y * silu(z); then for each group of d_in/G channels separately
   y <- y / sqrt(mean(y^2) + eps) * w.
   This is what mamba_ssm (the code the real checkpoints were trained with) computes
   (RMSNormGated(group_size=d_in/ngroups, norm_before_gate=False)). Two traps, see
   notebooks-docs/design.md section 2:
   - HF's MambaRMSNormGated historically (transformers 4.4x) normalised over ALL d_in channels
     at once, which is wrong as soon as n_groups > 1 (Codestral has n_groups = 8). Newer
     releases (5.x) take a `group_size` argument, but we do not want the fixtures to depend
     on which transformers release happens to be installed (5.23 here, 5.17 on the GPU machine),
     so we always install our own explicit module.
   - Codestral's config.json says "norm_before_gate": true. mamba_ssm's Mamba2 module and HF both
     ignore that key: the trained model is gate-FIRST (norm_before_gate=False). One fixture
     carries "norm_before_gate": true in its config.json to check that loaders ignore it too.
2. HF must run its pure-torch path. transformers 5.x would silently swap in mamba_ssm /
   causal_conv1d (if importable) or Hub kernels (the `kernels` package, downloads). We block
   those imports before transformers is imported (sys.modules[name] = None makes `import name`
   fail and find_spec() return None), set USE_HUB_KERNELS=0 and HF_HUB_OFFLINE=1, keep the
   model in eval() mode (the fused training path is never taken) and pass use_cache=False
   (no recurrent-decode path: every logit comes from the chunked-scan prefill).

Independent cross-check: the same model is implemented again below in plain numpy float64
(sequential recurrence, notebooks-docs/design.md section 2 steps 1-8, written from the design text, not from
HF's code), run on the tensors read back from the fixture's files by a small safetensors reader
of our own, and the relative L2 error between HF's fp32 logits and numpy's float64 logits must
be <= 1e-5. The measured figure goes into fixture.json. Where they disagree, numpy (notebooks-docs/design.md)
is the truth.

bf16 / mixed-dtype fixtures: the weights are rounded to the stored dtype and SAVED in it, but
the oracle computes in fp32 on the upcast stored values (our C engines compute in fp32 on the
stored values too), so the comparison is like with like.

Fixture-sensitivity figures (fixture.json "sensitivity"): the numpy model is also run with the
known wrong variants (gated norm over all d_in channels, norm before gate, no dt clamp) and the
relative L2 distance of those logits from the right ones is recorded, to show that the fixture
actually catches each mistake.
"""

import argparse
import json
import math
import os
import re
import shutil
import struct
import sys
import time

# --- keep HF on its pure-torch path, offline -------------------------------------------------
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["USE_HUB_KERNELS"] = "0"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
for _blocked in ("mamba_ssm", "causal_conv1d", "kernels"):
    sys.modules[_blocked] = None  # import fails -> HF falls back to its torch functions

import numpy as np
import torch
from torch import nn
import transformers
from transformers import Mamba2Config, Mamba2ForCausalLM

try:
    transformers.utils.logging.disable_progress_bar()
except Exception:
    pass

INF = float("inf")
N_GREEDY = 32
REL_L2_MAX = 1e-5
# Every greedy step must win by at least this fraction of the logits' RMS, so that engines with
# bf16 arithmetic (GPU GEMMs, relative error ~1e-2 on logits) still reproduce the same tokens.
GREEDY_REL_MARGIN = 0.05
MAX_TOKEN_DRAWS = 200
MIN_GREEDY_DISTINCT = 8  # a continuation that repeats one token tests little

# --------------------------------------------------------------------------------------------
# Fixture table. Shapes: d = hidden_size, L layers, H heads of P channels (d_in = H*P = 2*d),
# N = state_size, G = n_groups, K = conv_kernel, V = vocab, Q = chunk_size, T tokens.
# dt: dt at init is log-uniform in dt_range (dt_bias = inverse softplus of it); dt_limit is
# config.time_step_limit; inf_form says how Infinity is spelled in config.json.
# --------------------------------------------------------------------------------------------
FIXTURES = [
    dict(
        name="g1_f32_single",
        description=(
            "Baseline: n_groups=1, fp32 weights, single model.safetensors, untied lm_head, "
            "default time_step_limit [0.0, Infinity] written as the BARE Infinity token; "
            "chunk_size 8, T=29 (4 chunks, not a multiple of the chunk size)."
        ),
        d=32, L=2, H=4, P=16, N=16, G=1, K=4, V=256, Q=8, T=29,
        storage="f32", layout="single", shards=1, tied=False,
        dt_limit=(0.0, INF), inf_form="bare", dt_range=(1e-3, 1e-1), seed=1001,
    ),
    dict(
        name="g2_f32_sharded_tied_dtlimit",
        description=(
            "n_groups=2, fp32 weights, sharded (index + 2 shards), TIED embeddings (no "
            "lm_head.weight in the files), finite time_step_limit [0.0, 0.05] that clamps a "
            "good fraction of dt values (see dt_clamped_fraction), chunk_size 16, T=45 "
            "(3 chunks, not a multiple)."
        ),
        d=48, L=2, H=12, P=8, N=16, G=2, K=4, V=320, Q=16, T=45,
        storage="f32", layout="sharded", shards=2, tied=True, out_scale=4.0,
        dt_limit=(0.0, 0.05), inf_form=None, dt_range=(5e-3, 3e-1), seed=2002,
    ),
    dict(
        name="g4_bf16_sharded",
        description=(
            "Codestral-like: n_groups=4 (2 heads per group), bf16 weights, 3 layers, sharded "
            "(index + 3 shards), untied, time_step_limit [0.0, {\"__float__\": \"Infinity\"}] "
            "(newer transformers spelling), config carries \"norm_before_gate\": true and "
            "\"rms_norm\": true which must be ignored (gate-first is right), chunk_size 16, "
            "T=53 (4 chunks, not a multiple)."
        ),
        d=64, L=3, H=8, P=16, N=32, G=4, K=4, V=512, Q=16, T=53,
        storage="bf16", layout="sharded", shards=3, tied=False,
        dt_limit=(0.0, INF), inf_form="tagged", dt_range=(1e-3, 1e-1), seed=3003,
        extra_config={"norm_before_gate": True, "rms_norm": True},
    ),
    dict(
        name="g2_mixed_dtypes",
        description=(
            "Mixed stored dtypes per tensor in one model.safetensors written with the "
            "safetensors library directly: A_log, D, dt_bias in F32, conv1d weight+bias in F16, "
            "everything else BF16; embedding stored under the mamba_ssm alias "
            "backbone.embedding.weight (not .embeddings.); n_groups=2, vocab 200 (not a power "
            "of two), untied, bare Infinity, chunk_size 8, T=27 (4 chunks, not a multiple)."
        ),
        d=32, L=2, H=8, P=8, N=8, G=2, K=4, V=200, Q=8, T=27,
        storage="mixed", layout="direct", shards=1, tied=False,
        dt_limit=(0.0, INF), inf_form="bare", dt_range=(1e-3, 1e-1), seed=4004,
        embed_alias=True,
    ),
    dict(
        name="g8_bf16_long_dtlimit",
        description=(
            "n_groups=8 = num_heads (one head per group), bf16, single model.safetensors, tied "
            "embeddings, finite time_step_limit [0.001, 0.08] (both ends active), large dt so "
            "state decay is visible, 3 layers, chunk_size 8, T=70 (9 chunks, not a multiple)."
        ),
        d=32, L=3, H=8, P=8, N=16, G=8, K=4, V=384, Q=8, T=70,
        storage="bf16", layout="single", shards=1, tied=True, out_scale=4.0,
        dt_limit=(0.001, 0.08), inf_form=None, dt_range=(1e-4, 5e-1), seed=5005,
    ),
]


# --------------------------------------------------------------------------------------------
# Random weights (float64 draws, then rounded to the stored dtype)
# --------------------------------------------------------------------------------------------
def inv_softplus(y):
    return y + np.log(-np.expm1(-y))


def make_weights(fx):
    rng = np.random.default_rng(fx["seed"])
    d, L, H, P, N, G, K, V = (fx[k] for k in ("d", "L", "H", "P", "N", "G", "K", "V"))
    d_in = H * P
    conv_dim = d_in + 2 * G * N
    n_in = 2 * d_in + 2 * G * N + H
    W = {}
    W["backbone.embeddings.weight"] = rng.standard_normal((V, d))
    for l in range(L):
        p = f"backbone.layers.{l}."
        W[p + "norm.weight"] = rng.uniform(0.6, 1.4, d)
        w_in = rng.standard_normal((n_in, d)) / math.sqrt(d)
        w_in[-H:] *= 0.5  # dt rows: keep dt mostly governed by dt_bias
        W[p + "mixer.in_proj.weight"] = w_in
        W[p + "mixer.conv1d.weight"] = rng.uniform(-1, 1, (conv_dim, 1, K)) / math.sqrt(K)
        W[p + "mixer.conv1d.bias"] = rng.uniform(-1, 1, conv_dim) / math.sqrt(K)
        lo, hi = fx["dt_range"]
        dt0 = np.exp(rng.uniform(math.log(lo), math.log(hi), H))
        W[p + "mixer.dt_bias"] = inv_softplus(dt0)
        W[p + "mixer.A_log"] = np.log(rng.uniform(1.0, 16.0, H))
        W[p + "mixer.D"] = rng.uniform(0.5, 1.5, H)
        W[p + "mixer.norm.weight"] = rng.uniform(0.6, 1.4, d_in)
        # out_scale > 1 for tied models: with lm_head = embeddings the current token's own
        # embedding (e.e ~ d) dominates the logits and greedy decoding just repeats the last
        # token; a stronger mixer output makes the continuation depend on the context.
        W[p + "mixer.out_proj.weight"] = (rng.standard_normal((d, d_in)) / math.sqrt(d_in)
                                          * fx.get("out_scale", 1.0))
    W["backbone.norm_f.weight"] = rng.uniform(0.6, 1.4, d)
    if not fx["tied"]:
        W["lm_head.weight"] = rng.standard_normal((V, d)) / math.sqrt(d)
    return W


def draw_tokens(fx, attempt):
    """Prompt tokens; attempt > 0 redraws them (deterministically) when the greedy continuation
    of the previous draw had a near-tie (see GREEDY_REL_MARGIN)."""
    rng = np.random.default_rng([fx["seed"], 7919, attempt])
    return rng.integers(0, fx["V"], fx["T"]).tolist()


def stored_dtype(fx, name):
    if fx["storage"] == "f32":
        return torch.float32
    if fx["storage"] == "bf16":
        return torch.bfloat16
    # mixed
    if name.endswith(("mixer.A_log", "mixer.D", "mixer.dt_bias")):
        return torch.float32
    if ".conv1d." in name:
        return torch.float16
    return torch.bfloat16


def to_stored(fx, W):
    """float64 numpy -> torch tensors in the stored dtype (round to nearest even)."""
    return {k: torch.from_numpy(v.astype(np.float32)).to(stored_dtype(fx, k)).contiguous()
            for k, v in W.items()}


# --------------------------------------------------------------------------------------------
# Our own safetensors reader (numpy only): reads back exactly what is on disk
# --------------------------------------------------------------------------------------------
def read_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a: base + b]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(buf, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            arr = np.frombuffer(buf, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32).astype(np.float64)
        else:
            raise ValueError(f"{path}: {name}: dtype {dt} not handled")
        assert arr.size == int(np.prod(shape, dtype=np.int64)), name
        out[name] = (arr.reshape(shape), dt)
    return out


def read_checkpoint(dirpath):
    idx = os.path.join(dirpath, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            index = json.load(f)
        files = sorted(set(index["weight_map"].values()))
        tensors = {}
        for fn in files:
            part = read_safetensors(os.path.join(dirpath, fn))
            for k in part:
                assert index["weight_map"][k] == fn, (k, fn)
            tensors.update(part)
        assert set(tensors) == set(index["weight_map"]), "index and shards disagree"
        total = sum(a.size * {"F32": 4, "F16": 2, "BF16": 2}[dt] for a, dt in tensors.values())
        assert index["metadata"]["total_size"] == total, (index["metadata"]["total_size"], total)
        return tensors, files
    return read_safetensors(os.path.join(dirpath, "model.safetensors")), ["model.safetensors"]


# --------------------------------------------------------------------------------------------
# config.json: spell Infinity the way the fixture asks for
# --------------------------------------------------------------------------------------------
def _decode_tagged(obj):
    if isinstance(obj, dict) and set(obj) == {"__float__"}:
        return float(obj["__float__"])  # "Infinity" / "-Infinity" / "NaN"
    return obj


def _tag_floats(x):
    if isinstance(x, float) and not math.isfinite(x):
        return {"__float__": "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")}
    if isinstance(x, dict):
        return {k: _tag_floats(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_tag_floats(v) for v in x]
    return x


def rewrite_config(path, fx):
    with open(path) as f:
        cfg = json.load(f, object_hook=_decode_tagged)
    cfg.update(fx.get("extra_config", {}))
    if fx["inf_form"] == "tagged":
        cfg = _tag_floats(cfg)
    text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"  # bare: json writes Infinity
    with open(path, "w") as f:
        f.write(text)
    if fx["inf_form"] == "bare":
        assert "Infinity" in text and "__float__" not in text
    elif fx["inf_form"] == "tagged":
        assert '"__float__": "Infinity"' in text
    else:
        assert "Infinity" not in text


# --------------------------------------------------------------------------------------------
# HF side
# --------------------------------------------------------------------------------------------
class GroupedGatedRMSNorm(nn.Module):
    """mamba_ssm RMSNormGated(norm_before_gate=False, group_size=d_in/G), computed in fp32:
    y <- y*silu(z); per group of group_size channels: y <- y / sqrt(mean(y^2)+eps) * w."""

    def __init__(self, weight, group_size, eps):
        super().__init__()
        self.weight = weight  # the same Parameter as the replaced module
        self.group_size = group_size
        self.eps = eps

    def forward(self, hidden_states, gate=None):
        y = hidden_states.to(torch.float32)
        if gate is not None:
            y = y * nn.functional.silu(gate.to(torch.float32))
        *pre, n = y.shape
        yg = y.view(*pre, n // self.group_size, self.group_size)
        yg = yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(torch.float32) * yg.view(*pre, n)


def build_config(fx):
    lo, hi = fx["dt_limit"]
    return Mamba2Config(
        vocab_size=fx["V"], hidden_size=fx["d"], num_hidden_layers=fx["L"],
        num_heads=fx["H"], head_dim=fx["P"], state_size=fx["N"], n_groups=fx["G"],
        conv_kernel=fx["K"], expand=2, chunk_size=fx["Q"], layer_norm_epsilon=1e-5,
        time_step_limit=(lo, hi), tie_word_embeddings=fx["tied"], use_bias=False,
        use_conv_bias=True, hidden_act="silu", residual_in_fp32=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def write_checkpoint(fx, stored, outdir):
    cfg = build_config(fx)
    if fx["layout"] == "direct":
        from safetensors.torch import save_file
        cfg.save_pretrained(outdir)
        gen = os.path.join(outdir, "generation_config.json")
        if os.path.exists(gen):
            os.remove(gen)
        sd = {}
        for k, v in stored.items():
            if fx.get("embed_alias") and k == "backbone.embeddings.weight":
                k = "backbone.embedding.weight"
            sd[k] = v
        save_file(sd, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.manual_seed(0)
        model = Mamba2ForCausalLM(cfg)
        if fx["storage"] == "bf16":
            model = model.to(torch.bfloat16)
        missing, unexpected = model.load_state_dict(stored, strict=False)
        assert not unexpected, unexpected
        assert missing == (["lm_head.weight"] if fx["tied"] else []), missing
        if fx["tied"]:
            assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr()
        if fx["layout"] == "sharded":
            # HF keeps tensors whole and packs in its own order: find the smallest shard limit
            # (scanning up from total/shards) that gives exactly the requested number of shards
            total = sum(v.numel() * v.element_size() for v in stored.values())
            for step in range(200):
                limit = int(total / fx["shards"] * (1.0 + 0.01 * step)) + 1
                for fn in os.listdir(outdir):
                    if fn.startswith("model"):
                        os.remove(os.path.join(outdir, fn))
                model.save_pretrained(outdir, max_shard_size=limit)
                n = len([fn for fn in os.listdir(outdir) if fn.endswith(".safetensors")])
                if n == fx["shards"]:
                    break
            else:
                raise SystemExit(f"{fx['name']}: could not get {fx['shards']} shards")
        else:
            model.save_pretrained(outdir, max_shard_size="10GB")
    rewrite_config(os.path.join(outdir, "config.json"), fx)


def hf_model_from_files(outdir, tensors, fx):
    """Build HF's model from config.json and load the tensors read back from the files
    (upcast to fp32), strictly; replace every gated norm with the grouped gate-first one."""
    cfg = Mamba2Config.from_pretrained(outdir)
    assert list(cfg.time_step_limit) == list(fx["dt_limit"]), cfg.time_step_limit
    model = Mamba2ForCausalLM(cfg).to(torch.float32)
    sd = {}
    for k, (arr, _dt) in tensors.items():
        if k == "backbone.embedding.weight":
            k = "backbone.embeddings.weight"
        sd[k] = torch.from_numpy(arr.astype(np.float32))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert missing == (["lm_head.weight"] if fx["tied"] else []), missing
    if fx["tied"]:
        assert cfg.tie_word_embeddings
        model.lm_head.weight = model.backbone.embeddings.weight
    d_in = fx["H"] * fx["P"]
    for layer in model.backbone.layers:
        old = layer.mixer.norm
        layer.mixer.norm = GroupedGatedRMSNorm(old.weight, d_in // fx["G"], cfg.layer_norm_epsilon)
    model.eval()
    return model


def hf_from_pretrained_is_exact(outdir, tensors):
    """Does HF's own loader give exactly the stored values? (information only)"""
    try:
        m = Mamba2ForCausalLM.from_pretrained(outdir, dtype=torch.float32)
    except Exception as e:  # pragma: no cover
        return f"error: {type(e).__name__}: {e}"
    sd = m.state_dict()
    for k, (arr, _dt) in tensors.items():
        k2 = k.replace("backbone.embedding.", "backbone.embeddings.")
        if not torch.equal(sd[k2], torch.from_numpy(arr.astype(np.float32))):
            return False
    return True


@torch.no_grad()
def hf_logits(model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    return model(input_ids=x, use_cache=False).logits[0].to(torch.float32).numpy()


@torch.no_grad()
def hf_greedy(model, tokens, n, stop_below=-1.0):
    seq = list(tokens)
    out, margins = [], []
    for _ in range(n):
        if margins and margins[-1] < stop_below:
            return out, margins  # rejected draw: no need to finish it
        last = hf_logits(model, seq)[-1].astype(np.float64)  # full recompute, no cache
        order = np.argsort(-last, kind="stable")
        out.append(int(order[0]))
        margins.append(float(last[order[0]] - last[order[1]]))
        seq.append(int(order[0]))
    return out, margins


# --------------------------------------------------------------------------------------------
# numpy float64 model: notebooks-docs/design.md section 2, sequential recurrence
# --------------------------------------------------------------------------------------------
def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_softplus(x):  # torch / mamba_ssm: identity above 20
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def np_rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def np_forward(fx, Wt, tokens, eps=1e-5, variant=None, stats=None):
    """Wt: name -> float64 array. variant: None | 'norm_ungrouped' | 'norm_before_gate' |
    'no_dt_clamp' (the known wrong forms, for sensitivity figures only)."""
    d, L, H, P, N, G, K = (fx[k] for k in ("d", "L", "H", "P", "N", "G", "K"))
    d_in = H * P
    conv_dim = d_in + 2 * G * N
    lo, hi = fx["dt_limit"]
    emb = Wt.get("backbone.embeddings.weight", Wt.get("backbone.embedding.weight"))
    T = len(tokens)
    h = emb[np.asarray(tokens)].copy()  # (T, d) residual stream
    group_of_head = np.arange(H) // (H // G)  # head h uses group h // (H/G)
    n_clamped = n_dt = n_low = 0
    for l in range(L):
        p = f"backbone.layers.{l}."
        # 1. u = RMSNorm(h) * w
        u = np_rmsnorm(h, Wt[p + "norm.weight"], eps)
        # 2. [z | xBC | dt] = W_in u
        zxbcdt = u @ Wt[p + "mixer.in_proj.weight"].T
        z = zxbcdt[:, :d_in]
        xBC = zxbcdt[:, d_in:d_in + conv_dim]
        dt_raw = zxbcdt[:, d_in + conv_dim:]
        assert dt_raw.shape[1] == H
        # 3. causal depthwise conv, zeros before the start, then silu
        wc = Wt[p + "mixer.conv1d.weight"][:, 0, :]  # (conv_dim, K)
        xpad = np.concatenate([np.zeros((K - 1, conv_dim)), xBC], axis=0)
        conv = np.tile(Wt[p + "mixer.conv1d.bias"], (T, 1))
        for k in range(K):
            conv += wc[:, k] * xpad[k:k + T]
        xBC = np_silu(conv)
        # 4. split
        x = xBC[:, :d_in].reshape(T, H, P)
        B = xBC[:, d_in:d_in + G * N].reshape(T, G, N)
        C = xBC[:, d_in + G * N:].reshape(T, G, N)
        # 5. dt, A
        dt = np_softplus(dt_raw + Wt[p + "mixer.dt_bias"])
        if variant != "no_dt_clamp":
            clamped = np.clip(dt, lo, hi)
            n_clamped += int(np.sum(clamped != dt))
            n_low += int(np.sum(dt < lo))
            n_dt += dt.size
            dt = clamped
        A = -np.exp(Wt[p + "mixer.A_log"])
        Dp = Wt[p + "mixer.D"]
        # 6. SSD recurrence, S_h is P x N
        S = np.zeros((H, P, N))
        y = np.empty((T, H, P))
        for t in range(T):
            Bt = B[t][group_of_head]  # (H, N)
            Ct = C[t][group_of_head]
            S = np.exp(dt[t] * A)[:, None, None] * S + (dt[t][:, None] * x[t])[:, :, None] * Bt[:, None, :]
            y[t] = np.einsum("hpn,hn->hp", S, Ct) + Dp[:, None] * x[t]
        y = y.reshape(T, d_in)
        # 7. gated RMSNorm: gate first, then per group of d_in/G channels
        wn = Wt[p + "mixer.norm.weight"]
        if variant == "norm_before_gate":
            yg = y.reshape(T, G, d_in // G)
            yg = yg / np.sqrt(np.mean(yg * yg, axis=-1, keepdims=True) + eps)
            y = yg.reshape(T, d_in) * wn * np_silu(z)
        else:
            y = y * np_silu(z)
            if variant == "norm_ungrouped":
                y = np_rmsnorm(y, wn, eps)
            else:
                yg = y.reshape(T, G, d_in // G)
                yg = yg / np.sqrt(np.mean(yg * yg, axis=-1, keepdims=True) + eps)
                y = yg.reshape(T, d_in) * wn
        # 8. residual
        h = h + y @ Wt[p + "mixer.out_proj.weight"].T
    hf = np_rmsnorm(h, Wt["backbone.norm_f.weight"], eps)
    head = Wt.get("lm_head.weight", emb)
    if stats is not None:
        stats["dt_clamped_fraction"] = (n_clamped / n_dt) if n_dt else 0.0
        stats["dt_clamped_low_fraction"] = (n_low / n_dt) if n_dt else 0.0
        stats["residual_rms_final"] = float(np.sqrt(np.mean(h * h)))
    return hf @ head.T


def rel_l2(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------------------------
def make_one(fx, root):
    t0 = time.time()
    outdir = os.path.join(root, fx["name"])
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)

    W64 = make_weights(fx)
    stored = to_stored(fx, W64)
    write_checkpoint(fx, stored, outdir)

    # read everything back from disk with our own reader; it must be what we meant to store
    tensors, files = read_checkpoint(outdir)
    if fx["layout"] == "sharded":
        assert len(files) >= 2, files
    expect = dict(stored)
    if fx.get("embed_alias"):
        expect["backbone.embedding.weight"] = expect.pop("backbone.embeddings.weight")
    assert set(tensors) == set(expect), sorted(set(tensors) ^ set(expect))
    dt_names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for k, v in expect.items():
        arr, dt = tensors[k]
        assert dt == dt_names[v.dtype], (k, dt, v.dtype)
        assert np.array_equal(arr, v.to(torch.float64).numpy()), k

    # HF oracle
    model = hf_model_from_files(outdir, tensors, fx)
    for attempt in range(MAX_TOKEN_DRAWS):
        tokens = draw_tokens(fx, attempt)
        logits = hf_logits(model, tokens)
        rms = float(np.sqrt(np.mean(logits.astype(np.float64) ** 2)))
        greedy, margins = hf_greedy(model, tokens, N_GREEDY, GREEDY_REL_MARGIN * rms)
        if len(greedy) == N_GREEDY and min(margins) >= GREEDY_REL_MARGIN * rms and len(set(greedy)) >= MIN_GREEDY_DISTINCT:
            break
    else:
        raise SystemExit(f"{fx['name']}: no token draw with a clear, non-constant greedy run")
    T, V = len(tokens), fx["V"]
    assert logits.shape == (T, V)
    assert np.all(np.isfinite(logits))

    # numpy float64 cross-check on the same stored values
    Wt = {k: a for k, (a, _dt) in tensors.items()}
    stats = {}
    ref = np_forward(fx, Wt, tokens, stats=stats)
    err = rel_l2(logits, ref)
    if not err <= REL_L2_MAX:
        raise SystemExit(f"{fx['name']}: HF vs numpy relative L2 {err:.3e} > {REL_L2_MAX}")
    # greedy from numpy must agree as well (checks the continuation, not only the prompt)
    seq = list(tokens)
    for g in greedy:
        nxt = int(np.argmax(np_forward(fx, Wt, seq)[-1]))
        assert nxt == g, (fx["name"], "numpy greedy disagrees with HF", nxt, g)
        seq.append(nxt)

    sens = {}
    for var in ("norm_ungrouped", "norm_before_gate", "no_dt_clamp"):
        if var == "norm_ungrouped" and fx["G"] == 1:
            continue
        if var == "no_dt_clamp" and fx["dt_limit"] == (0.0, INF):
            continue
        sens[var] = rel_l2(np_forward(fx, Wt, tokens, variant=var), ref)

    argmax = np.argmax(logits, axis=-1)
    n_distinct = int(len(set(argmax.tolist())))
    assert n_distinct >= T // 3, f"degenerate logits: {n_distinct} distinct argmax in {T}"

    logits.astype("<f4").tofile(os.path.join(outdir, "logits.f32"))
    cfg_text = open(os.path.join(outdir, "config.json")).read()
    meta = {
        "name": fx["name"],
        "description": fx["description"],
        "tokens": [int(t) for t in tokens],
        "T": T,
        "vocab_size": V,
        "chunk_size": fx["Q"],
        "logits": "logits.f32",
        "logits_shape": [T, V],
        "greedy": greedy,
        "greedy_margins": margins,
        "greedy_min_margin": min(margins),
        "token_draw": attempt,
        "hf_vs_numpy_rel_l2": err,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "seed": fx["seed"],
        "shape": {k: fx[k] for k in ("d", "L", "H", "P", "N", "G", "K")},
        "time_step_limit": [fx["dt_limit"][0], "Infinity" if fx["dt_limit"][1] == INF else fx["dt_limit"][1]],
        "infinity_spelling": {"bare": "Infinity", "tagged": "{\"__float__\": \"Infinity\"}", None: None}[fx["inf_form"]],
        "tie_word_embeddings": fx["tied"],
        "files": sorted(os.listdir(outdir)) + ["logits.f32", "fixture.json"],
        "tensor_dtypes": sorted({dt for _a, dt in tensors.values()}),
        "dt_clamped_fraction": stats["dt_clamped_fraction"],
        "dt_clamped_low_fraction": stats["dt_clamped_low_fraction"],
        "logits_rms": float(np.sqrt(np.mean(logits.astype(np.float64) ** 2))),
        "distinct_argmax_positions": n_distinct,
        "sensitivity": sens,
        "hf_from_pretrained_exact": hf_from_pretrained_is_exact(outdir, tensors),
        "oracle": ("transformers Mamba2ForCausalLM, fp32, CPU, pure-torch chunked scan, "
                   "use_cache=False, mixer.norm replaced by grouped gate-first RMSNorm; "
                   "greedy: argmax of a full forward recompute at each step"),
    }
    meta["files"] = sorted(set(meta["files"]))
    assert ("Infinity" in cfg_text) == (fx["inf_form"] is not None)
    text = json.dumps(meta, indent=2)
    # lists of numbers on one line each
    text = re.sub(r"\[\s*([-0-9.e+,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    with open(os.path.join(outdir, "fixture.json"), "w") as f:
        f.write(text + "\n")
    for fn in os.listdir(outdir):
        os.chmod(os.path.join(outdir, fn), 0o644)
    size = sum(os.path.getsize(os.path.join(outdir, f)) for f in os.listdir(outdir))
    print(f"{fx['name']:30s} T={T:3d} V={V:3d} rel_l2={err:.2e} clamp={stats['dt_clamped_fraction']:.2f} "
          f"margin={min(margins)/meta['logits_rms']:.3f}rms draw={attempt} distinct={n_distinct}/{T} files={len(files)} "
          f"{size/1024:.0f} KiB {time.time()-t0:.1f}s sens={ {k: round(v, 3) for k, v in sens.items()} }",
          flush=True)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "fixtures"))
    ap.add_argument("--only", nargs="*", help="fixture names (default: all)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    for fx in FIXTURES:
        if args.only and fx["name"] not in args.only:
            continue
        make_one(fx, args.out)
    print(f"done in {time.time()-t0:.1f}s (transformers {transformers.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
