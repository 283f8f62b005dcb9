#!/usr/bin/env python3
"""Write a Mamba-2 checkpoint (Hugging Face layout, bf16, as data/write_checkpoint.py makes) as a
GGUF file that llama.cpp's `mamba2` architecture loads, for the same-machine comparison of
bench/llama_cpp_bench.sh.

    python3 bench/llama_cpp_gguf.py CKPT_DIR TOKENIZER_MODEL OUT.gguf

It does what llama.cpp's convert_hf_to_gguf.py (class Mamba2Model) does, without torch: the
matrices (embeddings, in_proj, out_proj, lm_head) stay bf16, byte for byte; the small tensors go
to f32 with the converter's reshapes (conv1d weight squeezed to [conv_dim, K], A = -exp(A_log)
and D as [H, 1], the gated norm's weight as [groups, d_inner / groups]); the vocabulary comes
from the sentencepiece model (data/mistral-v3/tokenizer.model.v3), as the converter's
_set_vocab_sentencepiece reads it. Needs numpy, sentencepiece and llama.cpp's gguf-py.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf
import sentencepiece


def safetensors_tensors(ckpt):
    """name -> (file, dtype, shape, byte offset, byte length) over every shard of CKPT."""
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        sys.exit(f"{ckpt}: no .safetensors files")
    out = {}
    for f in files:
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            out[name] = (f, info["dtype"], tuple(info["shape"]), 8 + n + a, b - a)
    return out


def read_raw(entry):
    f, dtype, shape, off, _ = entry
    if dtype != "BF16":
        sys.exit(f"{f}: a tensor is {dtype}; this writer expects the bf16 checkpoints of data/write_checkpoint.py")
    return np.memmap(f, dtype=np.uint16, mode="r", offset=off, shape=shape)


def bf16_to_f32(raw):
    return (raw.astype(np.uint32) << 16).view(np.float32)


def add_sentencepiece_vocab(w, sp_path, V, bos, eos):
    """The vocabulary of V tokens, as convert_hf_to_gguf.py's _set_vocab_sentencepiece reads it from the
    sentencepiece model SP_PATH; ids past the model's own vocabulary become unused [PADi] tokens."""
    sp = sentencepiece.SentencePieceProcessor(model_file=sp_path)
    tokens, scores, types = [], [], []
    for i in range(V):
        if i >= sp.vocab_size():
            tokens.append(f"[PAD{i}]".encode()), scores.append(-1000.0), types.append(gguf.TokenType.UNUSED)
            continue
        kind = (gguf.TokenType.UNKNOWN if sp.is_unknown(i) else gguf.TokenType.CONTROL if sp.is_control(i)
                else gguf.TokenType.UNUSED if sp.is_unused(i) else gguf.TokenType.BYTE if sp.is_byte(i)
                else gguf.TokenType.NORMAL)
        tokens.append(sp.id_to_piece(i).encode("utf-8")), scores.append(sp.get_score(i)), types.append(kind)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(sp.unk_id())


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    ckpt, sp_path, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    cfg = json.loads((ckpt / "config.json").read_text())
    t = safetensors_tensors(ckpt)
    d, L, groups = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["n_groups"]
    d_inner, head_dim = cfg["intermediate_size"], cfg["head_dim"]

    w = gguf.GGUFWriter(out, "mamba2")
    w.add_context_length(2**20)
    w.add_embedding_length(d)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(L)
    w.add_ssm_conv_kernel(cfg["conv_kernel"])
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(cfg["state_size"])
    w.add_ssm_time_step_rank(d_inner // head_dim)
    w.add_ssm_group_count(groups)
    w.add_layer_norm_rms_eps(cfg["layer_norm_epsilon"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)

    add_sentencepiece_vocab(w, sp_path, cfg["vocab_size"], cfg["bos_token_id"], cfg["eos_token_id"])

    bf16 = gguf.GGMLQuantizationType.BF16

    def matrix(gname, hname):
        w.add_tensor(gname, read_raw(t[hname]), raw_dtype=bf16)

    def small(gname, hname, shape=None, fn=None):
        v = bf16_to_f32(read_raw(t[hname]))
        if fn:
            v = fn(v)
        w.add_tensor(gname, np.ascontiguousarray(v.reshape(shape) if shape else v, dtype=np.float32))

    matrix("token_embd.weight", "backbone.embeddings.weight")
    for l in range(L):
        p, g = f"backbone.layers.{l}.", f"blk.{l}."
        small(g + "attn_norm.weight", p + "norm.weight")
        matrix(g + "ssm_in.weight", p + "mixer.in_proj.weight")
        conv = t[p + "mixer.conv1d.weight"][2]
        small(g + "ssm_conv1d.weight", p + "mixer.conv1d.weight", (conv[0], conv[2]))
        small(g + "ssm_conv1d.bias", p + "mixer.conv1d.bias")
        small(g + "ssm_dt.bias", p + "mixer.dt_bias")
        small(g + "ssm_a", p + "mixer.A_log", (-1, 1), lambda a: -np.exp(a))
        small(g + "ssm_d", p + "mixer.D", (-1, 1))
        small(g + "ssm_norm.weight", p + "mixer.norm.weight", (groups, d_inner // groups))
        matrix(g + "ssm_out.weight", p + "mixer.out_proj.weight")
    small("output_norm.weight", "backbone.norm_f.weight")
    matrix("output.weight", "lm_head.weight")

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=True)
    w.close()


if __name__ == "__main__":
    main()
