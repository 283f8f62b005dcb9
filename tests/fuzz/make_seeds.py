#!/usr/bin/env python3
"""Seed inputs of the fuzz harnesses, written to tests/fuzz/seeds/NAME/ (python3, standard library only).

The seeds are real files from data/ where they are small (configs, the tiny tokenizers) and small
synthetic files otherwise (tiny checkpoints, safetensors files, a state file), so that mutations stay
fast. The committed corpus (tests/fuzz/corpus/NAME) grew from these; to rebuild it:

    python3 tests/fuzz/make_seeds.py
    build-fuzz/fuzz_NAME -merge=1 tests/fuzz/corpus/NAME tests/fuzz/seeds/NAME build-fuzz/new/NAME

Run from anywhere; paths are relative to the repository root.
"""
import glob
import json
import os
import random
import re
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fuzz", "seeds")
SEP = b"\n--mamba2-fuzz-part--\n"  # FUZZ_PART_SEP of targets.h
rng = random.Random(1234)


def put(name, fname, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def bf16(vals):
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in vals)


def f16(vals):
    return struct.pack("<%de" % len(vals), *vals)


ENC = {"F32": (4, f32), "BF16": (2, bf16), "F16": (2, f16)}


def safetensors(tensors, metadata=None, pad=8):
    """tensors: list of (name, dtype, shape, raw bytes or None for random values)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        n = 1
        for s in shape:
            n *= s
        if raw is None:
            size, enc = ENC[dtype]
            raw = enc([rng.uniform(-0.5, 0.5) for _ in range(n)])
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % pad)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def tiny_model(d=4, L=1, expand=2, P=4, N=2, G=1, K=2, V=6, tie=False, dtype="F32", prefix="", conv_bias=True):
    """config.json text and the tensor list of a tiny Mamba-2."""
    d_in = expand * d
    H = d_in // P
    conv_dim = d_in + 2 * G * N
    cfg = {"architectures": ["Mamba2ForCausalLM"], "hidden_size": d, "num_hidden_layers": L, "expand": expand,
           "head_dim": P, "num_heads": H, "state_size": N, "n_groups": G, "conv_kernel": K, "vocab_size": V,
           "chunk_size": 2, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": tie, "use_conv_bias": conv_bias,
           "time_step_limit": [0.0, float("inf")], "bos_token_id": 1, "eos_token_id": 2}
    t = [(prefix + "backbone.embeddings.weight", dtype, (V, d), None)]
    for l in range(L):
        p = prefix + "backbone.layers.%d." % l
        t += [(p + "norm.weight", dtype, (d,), None),
              (p + "mixer.in_proj.weight", dtype, (2 * d_in + 2 * G * N + H, d), None),
              (p + "mixer.conv1d.weight", dtype, (conv_dim, 1, K), None)]
        if conv_bias:
            t.append((p + "mixer.conv1d.bias", dtype, (conv_dim,), None))
        t += [(p + "mixer.dt_bias", dtype, (H,), None), (p + "mixer.A_log", dtype, (H,), None),
              (p + "mixer.D", dtype, (H,), None), (p + "mixer.norm.weight", dtype, (d_in,), None),
              (p + "mixer.out_proj.weight", dtype, (d, d_in), None)]
    t.append((prefix + "backbone.norm_f.weight", dtype, (d,), None))
    if not tie:
        t.append((prefix + "lm_head.weight", dtype, (V, d), None))
    text = json.dumps(cfg, indent=1).replace("Infinity", "Infinity").encode()
    return text, t


def pb_fields(b):
    """Top-level protobuf fields of b: (field number, raw bytes of the whole field)."""
    def varint(i):
        v, s = 0, 0
        while True:
            c = b[i]
            i += 1
            v |= (c & 0x7F) << s
            s += 7
            if not c & 0x80:
                return v, i
    i, out = 0, []
    while i < len(b):
        start = i
        k, i = varint(i)
        w = k & 7
        if w == 0:
            _, i = varint(i)
        elif w == 2:
            n, i = varint(i)
            i += n
        elif w == 5:
            i += 4
        elif w == 1:
            i += 8
        out.append((k >> 3, b[start:i]))
    return out


def spm_subset(data, keep):
    """A SentencePiece model with its first `keep` pieces and its byte pieces (so byte_fallback still loads)."""
    out, n = b"", 0
    for f, raw in pb_fields(data):
        if f == 1:
            is_byte = b"<0x" in raw and raw.endswith(b"\x18\x06")  # type: BYTE (field 3 = 6) written last
            if n >= keep and not is_byte:
                continue
            n += 1
        out += raw
    return out


def main():
    # ---- config: the fixtures' config.json, Codestral, Mistral's params.json, the __float__ form
    for p in sorted(glob.glob(os.path.join(ROOT, "data", "fixtures", "*", "config.json"))):
        put("config", os.path.basename(os.path.dirname(p)) + ".json", open(p, "rb").read())
    put("config", "codestral.json", json.dumps(
        {"hidden_size": 4096, "num_hidden_layers": 64, "vocab_size": 32768, "num_heads": 128, "head_dim": 64,
         "state_size": 128, "n_groups": 8, "expand": 2, "conv_kernel": 4, "tie_word_embeddings": False,
         "norm_before_gate": True, "time_step_limit": [0.0, float("inf")]}).encode())
    put("config", "params.json", json.dumps(
        {"dim": 4096, "n_layers": 64, "vocab_size": 32768, "n_groups": 8, "rms_norm": True,
         "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 1, "tie_embeddings": False,
         "ssm_cfg": {"ngroups": 8, "d_state": 128, "headdim": 64, "d_conv": 4, "dt_limit": [0.0, 1e9]}}).encode())
    put("config", "float_form.json", b'{"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, '
        b'"time_step_limit": [0.0, {"__float__": "Infinity"}], "layer_norm_epsilon": {"__float__": "1e-5"}}')

    # ---- safetensors: small files with every dtype, metadata, scalars, empty tensors, an unknown dtype
    put("safetensors", "tiny_f32.safetensors", safetensors(tiny_model()[1], {"format": "pt"}))
    put("safetensors", "tiny_bf16_g2.safetensors", safetensors(tiny_model(G=2, dtype="BF16")[1]))
    put("safetensors", "mixed.safetensors", safetensors(
        [("a", "F32", (2, 3), None), ("b", "BF16", (4,), None), ("c", "F16", (1, 1, 2, 2), None),
         ("scalar", "F32", (), None), ("empty", "F32", (0, 5), b""), ("ids", "I64", (2,), struct.pack("<2q", 1, 2))],
        {"format": "pt", "note": "x"}))
    put("safetensors", "empty_header.safetensors", safetensors([]))

    # ---- checkpoint: config.json SEP model.safetensors, or config SEP index SEP shard SEP shard
    for tag, kw in [("g1_f32", {}), ("g2_bf16_tied", {"G": 2, "dtype": "BF16", "tie": True}),
                    ("g1_f16_2layers_nobias", {"L": 2, "dtype": "F16", "conv_bias": False}),
                    ("mistral_prefix", {"prefix": "model."}), ("k4_n4", {"K": 4, "N": 4, "G": 2})]:
        cfg, tensors = tiny_model(**kw)
        put("checkpoint", tag, cfg + SEP + safetensors(tensors))
    cfg, tensors = tiny_model(L=2, G=2)
    half = len(tensors) // 2
    shards = [tensors[:half], tensors[half:]]
    wmap = {name: "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
            for i, s in enumerate(shards) for name, _, _, _ in s}
    index = json.dumps({"metadata": {"total_size": 0}, "weight_map": wmap}, indent=1).encode()
    put("checkpoint", "sharded", SEP.join([cfg, index] + [safetensors(s) for s in shards]))

    # ---- tokenizers: the tiny ones of data/tokenizer/tiny (the Mistral ones are too big for seeds)
    for p in sorted(glob.glob(os.path.join(ROOT, "data", "tokenizer", "tiny", "*.json"))):
        put("tokenizer_json", os.path.basename(p), open(p, "rb").read())
        # and a small copy (ids < 120, the merges among them): mutations of 3 KB run 10x faster
        tok = json.load(open(p, encoding="utf-8"))
        vocab = {k: v for k, v in tok["model"]["vocab"].items() if v < 120}
        merges = []
        for m in tok["model"]["merges"]:
            a, b = m if isinstance(m, list) else m.split(" ")
            if a in vocab and b in vocab and a + b in vocab:
                merges.append(m)
        tok["model"]["vocab"], tok["model"]["merges"] = vocab, merges
        tok["added_tokens"] = [t for t in tok.get("added_tokens") or [] if t["id"] < 120 or t["id"] > 1000]
        put("tokenizer_json", "small_" + os.path.basename(p), json.dumps(tok, ensure_ascii=False).encode())
    for p in sorted(glob.glob(os.path.join(ROOT, "data", "tokenizer", "tiny", "*.model"))):
        data = open(p, "rb").read()
        put("tokenizer_spm", os.path.basename(p), data)
        put("tokenizer_spm", "small_" + os.path.basename(p), spm_subset(data, 100))

    # ---- state: a saved state for targets.c's state_config (L=1, d=4, H=2, P=4, N=2, G=1, K=2, V=6),
    # version 2 (layout in model/state.c): header, data, crc32 of both; and the version 1 file it replaced
    fields = [1, 4, 2, 4, 2, 1, 2, 6]  # n_layer d_model n_heads head_dim d_state n_groups d_conv vocab
    conv_len, ssm_len = 1 * (8 + 2 * 1 * 2) * (2 - 1), 1 * 2 * 4 * 2
    data = f32([rng.uniform(-1, 1) for _ in range(conv_len + ssm_len)])
    # mamba2_state_config_id(): d_model n_layer n_heads head_dim d_state n_groups d_conv expand vocab tie
    # conv_bias as int64, then eps dt_min dt_max as doubles (the config parser's defaults for the rest)
    cfg_id = zlib.crc32(struct.pack("<11q3d", 4, 1, 2, 4, 2, 1, 2, 2, 6, 1, 1, 1e-5, 0.0, float("inf")))
    state = b"MAMBA2ST" + struct.pack("<II", 2, 104) + struct.pack("<9q", *fields, 5)
    state += struct.pack("<IIQ", cfg_id, 0, len(data)) + data
    put("state", "state_v2.bin", state + struct.pack("<I", zlib.crc32(state)))
    put("state", "state_v1.bin", b"MAMBA2ST" + struct.pack("<II", 1, 9) + struct.pack("<9q", *fields, 5) + data)

    # ---- encode: a byte choosing the tokenizer (targets.c's encode_tokenizers), then a line of texts.txt
    lines = open(os.path.join(ROOT, "data", "tokenizer", "texts.txt"), "rb").read().split(b"\n")
    picks = [l for l in lines if 0 < len(l) < 200]
    rng.shuffle(picks)
    unescape = lambda s: re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), s)
    for i, l in enumerate(picks[:70]):
        put("encode", "text%02d" % i, bytes([i % 7]) + unescape(l))


if __name__ == "__main__":
    main()
