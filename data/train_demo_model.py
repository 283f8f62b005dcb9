#!/usr/bin/env python3
"""Train the small demo Mamba-2 shipped in data/stdlib-mamba2/ (issue 7), in one run.

    python3 data/train_demo_model.py --out DIR [--budget 360] [--device cuda] [--fast-conv]
    python3 data/train_demo_model.py --out DIR --fixture-only     # rewrite DIR/greedy.json only

Everything is made from the Python standard library's own source code (every machine has one):

1. corpus: every *.py file under sysconfig's stdlib directory (site-packages / dist-packages left
   out), read as UTF-8, sorted by path; one file in 50 (by a CRC32 of its relative path) is held
   out for validation;
2. tokenizer: Hugging Face `tokenizers` BPE with byte fallback, in the structure of the 7B models'
   tokenizer.json (Mistral v3: no normalizer, Metaspace pre-tokenizer with prepend_scheme "first"
   and split false, decoder Replace + ByteFallback + Fuse + Strip, post-processor BOS + text,
   added tokens <unk> <s> </s>, then the 256 byte tokens <0x00>..<0xFF> at ids 3..258), 4096 ids.
   While training, the text is cut into chunks (newline + indentation, an identifier or number
   with its leading space, a run of punctuation with its leading space) so that merges stay
   within them; the tokenizer that is saved encodes the text as ONE Metaspace word, as Mistral's;
3. model: transformers' Mamba2ForCausalLM (pure-torch path) with every `mixer.norm` REPLACED by the
   grouped gate-first RMSNorm (notebooks-docs/design.md section 2 step 7: y <- y*silu(z), then each group of
   d_in/G channels normalised separately), which is what mamba_ssm and our C engine compute and
   what transformers' own MambaRMSNormGated does NOT do in every release; n_groups = 2;
   AdamW, fp32 master weights, bf16 autocast, a fixed token budget per step, a wall-clock budget
   (--budget seconds of optimiser steps: the number of steps is set from the measured speed
   after the first steps, and the learning rate follows a cosine over that many steps);
4. output (DIR): config.json, model.safetensors (bf16, Hugging Face names, tied embeddings),
   tokenizer.json, greedy.json (the fixture: the fixed Python prompt PROMPT, BOS first, and its
   greedy 64-token continuation by transformers in fp32 on the CPU from the saved bf16 weights,
   full recompute per token, with the grouped norm, every step's margin recorded; plus a
   "confident" continuation without near-ties, for bf16 engines), train_log.json (losses,
   timings, provenance), sample_hf.txt (a sampled continuation made by transformers, for
   information; not shipped).

The HF model is kept on its pure-torch path, offline (mamba_ssm, causal_conv1d and `kernels`
imports are blocked, USE_HUB_KERNELS=0), as in data/make_fixtures.py.
"""

import argparse
import json
import math
import os
import platform
import re
import sys
import sysconfig
import time
import zlib

T_START = time.time()

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["USE_HUB_KERNELS"] = "0"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
for _blocked in ("mamba_ssm", "causal_conv1d", "kernels"):
    sys.modules[_blocked] = None  # import fails -> HF falls back to its torch functions

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
import transformers
from transformers import Mamba2Config, Mamba2ForCausalLM
from safetensors.torch import save_file

META = "\u2581"  # "▁"
SPECIALS = ["<unk>", "<s>", "</s>"]
BOS_ID, EOS_ID = 1, 2
N_GREEDY = 64
# The fixture (greedy.json): the greedy continuation of PROMPT, whatever its margins (engines that
# compute in fp32 reproduce it: the smallest margin is recorded), and a second one, "confident", of
# the first of CONFIDENT_PROMPTS whose greedy continuation never wins by less than MIN_MARGIN
# (logits), for engines with bf16 arithmetic (the GPU prefill), which may flip a near-tie.
# (A prompt that ends a line before an indented one ends with the indentation: this tokenizer makes
# "\n" + indentation one token, so a bare "\n" there is something the model never saw.)
PROMPT = "def fibonacci(n):\n    "
CONFIDENT_PROMPTS = ["import os\nimport sys\n", "    def __init__(self, name):\n        self.name = name\n        ",
                     "def fibonacci(n):\n    if n < 2:\n        return n\n    "]
MIN_MARGIN = 0.15


def log(msg):
    print(f"[{time.time() - T_START:7.1f}s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# 1. corpus
# ------------------------------------------------------------------------------------------------
def read_corpus(root, max_file_bytes):
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, root)
            try:
                if os.path.islink(path) or os.path.getsize(path) > max_file_bytes:
                    continue
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            text = text.replace("\r\n", "\n")
            if text.strip():
                files.append((rel, text))
    files.sort()
    return files


def is_val(rel):
    return zlib.crc32(rel.encode("utf-8")) % 50 == 0


# ------------------------------------------------------------------------------------------------
# 2. tokenizer
# ------------------------------------------------------------------------------------------------
# Training-time chunks (after ' ' -> '▁'): newline + indentation; an identifier / number with its
# leading space; a run of punctuation with its leading space; a run of spaces; any other character.
CHUNK = r"\n" + META + r"*|" + META + r"?\w+|" + META + r"?[^\s\w" + META + r"]+|" + META + r"+|\s"


def train_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=META, prepend_scheme="first", split=False),
        pre_tokenizers.Split(Regex(CHUNK), behavior="isolated"),
    ])
    ascii_chars = [chr(c) for c in range(0x21, 0x7F)] + ["\n", "\t", META]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 256,  # + the 256 byte tokens added below
        min_frequency=2,
        special_tokens=SPECIALS,
        limit_alphabet=128,
        initial_alphabet=ascii_chars,
        max_token_length=24,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    j = json.loads(tok.to_str())
    trained = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [k for k, _ in trained[:3]] == SPECIALS, trained[:3]
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in trained[3:]:
        assert piece not in vocab, f"trained piece {piece!r} collides with a byte token"
        vocab[piece] = len(vocab)
    assert len(vocab) <= vocab_size, len(vocab)
    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for i, s in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": META, "prepend_scheme": "first", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": META}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": j["model"]["merges"],
        },
    }
    text = json.dumps(out, ensure_ascii=False, indent=2)
    final = Tokenizer.from_str(text)
    assert final.get_vocab_size() == len(vocab)
    return final, text


def check_tokenizer(tok):
    """Round trips on code with indentation, unicode outside the alphabet, bytes, tabs."""
    samples = [
        "def f(x):\n    return x + 1\n",
        "class A(object):\n\t'''doc'''\n\n    def __init__(self):\n        self.x = {'é': 1, '漢字': 2}\n",
        "x = 1  # two spaces, trailing   \n\n\n    y\n",
        "emoji \U0001F600 and control \x07 chars",
    ]
    for s in samples:
        ids = tok.encode(s).ids
        assert ids[0] == BOS_ID, ids[:3]
        back = tok.decode(ids)
        assert back == s, (s, back)
    return True


# ------------------------------------------------------------------------------------------------
# 3. model
# ------------------------------------------------------------------------------------------------
class GroupedGatedRMSNorm(nn.Module):
    """mamba_ssm RMSNormGated(norm_before_gate=False, group_size=d_in/G), computed in fp32:
    y <- y*silu(z); per group of group_size channels: y <- y / sqrt(mean(y^2)+eps) * w.
    (Same module as data/make_fixtures.py.)"""

    def __init__(self, weight, group_size, eps):
        super().__init__()
        self.weight = weight  # the same Parameter as the replaced module
        self.group_size = group_size
        self.eps = eps
        self.variance_epsilon = eps  # read (not used) by HF's training path before its torch fallback

    def forward(self, hidden_states, gate=None):
        y = hidden_states.to(torch.float32)
        if gate is not None:
            y = y * nn.functional.silu(gate.to(torch.float32))
        *pre, n = y.shape
        yg = y.view(*pre, n // self.group_size, self.group_size)
        yg = yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(torch.float32) * yg.view(*pre, n)


def causal_conv1d_shift_add(hidden_states, weight, bias=None, activation=None, **kwargs):
    """transformers' torch causal_conv1d_fn (depthwise, causal, zeros before the start), written as K
    shifted multiply-adds: out[:, c, t] = b_c + sum_k w[c, k] * x[:, c, t - K + 1 + k]. Same values; its
    backward avoids the depthwise-convolution backward kernel, 84% of a training step with transformers
    5.23 on the CPU. (With 5.17, the GPU machine's release, the chunk scan's broadcast products of
    ~1 G elements per layer dominate instead: the shipped model trained at 40k tokens/s on the H100.)"""
    _, _, T = hidden_states.shape
    K = weight.shape[-1]
    x = F.pad(hidden_states.to(weight.dtype), (K - 1, 0))
    out = sum(weight[:, k, None] * x[:, :, k: k + T] for k in range(K))
    if bias is not None:
        out = out + bias[:, None]
    if activation is not None:
        out = F.silu(out) if activation == "silu" else transformers.activations.ACT2FN[activation](out)
    return out.to(hidden_states.dtype)


def make_config(a):
    return Mamba2Config(
        vocab_size=a.vocab, hidden_size=a.d_model, num_hidden_layers=a.layers,
        num_heads=2 * a.d_model // a.head_dim, head_dim=a.head_dim, state_size=a.d_state,
        n_groups=a.groups, conv_kernel=4, expand=2, chunk_size=a.chunk, layer_norm_epsilon=1e-5,
        time_step_limit=(0.0, float("inf")), tie_word_embeddings=True, use_bias=False,
        use_conv_bias=True, hidden_act="silu", residual_in_fp32=True, initializer_range=0.02,
        rescale_prenorm_residual=True, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=0,
    )


def correct_norms(model, cfg):
    d_in = cfg.num_heads * cfg.head_dim
    for layer in model.backbone.layers:
        old = layer.mixer.norm
        layer.mixer.norm = GroupedGatedRMSNorm(old.weight, d_in // cfg.n_groups, cfg.layer_norm_epsilon)
    return model


def build_model(cfg, device):
    model = Mamba2ForCausalLM(cfg)
    model = correct_norms(model, cfg).to(device)
    assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr(), "not tied"
    return model


def lm_loss(model, seq, autocast_dtype):
    """Mean next-token cross-entropy (nats) of seq [B, T+1]."""
    x, y = seq[:, :-1], seq[:, 1:]
    with torch.autocast(device_type=seq.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(input_ids=x, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate(model, stream, T, batch, device, autocast_dtype, max_windows=None):
    """Mean loss over non-overlapping windows of T+1 tokens of the validation stream."""
    was = model.training
    model.eval()
    n_win = (len(stream) - 1) // T
    if max_windows:
        n_win = min(n_win, max_windows)
    total, count = 0.0, 0
    data = torch.from_numpy(stream[: n_win * T + 1].astype(np.int64))
    for i in range(0, n_win, batch):
        k = min(batch, n_win - i)
        seq = torch.stack([data[(i + j) * T: (i + j + 1) * T + 1] for j in range(k)]).to(device)
        total += float(lm_loss(model, seq, autocast_dtype)) * k * T
        count += k * T
    model.train(was)
    return total / max(count, 1), count


@torch.no_grad()
def greedy(model, ids, n):
    """Full recompute per token (no cache: HF's cached decode ignores time_step_limit), fp32."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        last = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].double()
        top = torch.topk(last, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(out[-1])
    return out, margins


@torch.no_grad()
def sample(model, ids, n, temperature, top_k, seed, device):
    g = torch.Generator(device="cpu").manual_seed(seed)
    seq = list(ids)
    for _ in range(n):
        last = model(input_ids=torch.tensor([seq], device=device), use_cache=False).logits[0, -1].float().cpu()
        v, i = torch.topk(last / temperature, top_k)
        nxt = int(i[torch.multinomial(torch.softmax(v, -1), 1, generator=g)])
        if nxt == EOS_ID:
            break
        seq.append(nxt)
    return seq[len(ids):]


def lr_at(step, total, warmup, peak, floor_frac=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def load_saved(d):
    """The saved checkpoint in DIR as transformers' model, fp32 on the CPU, grouped norm, tied."""
    from safetensors.torch import load_file
    cfg = Mamba2Config.from_pretrained(d)
    model = correct_norms(Mamba2ForCausalLM(cfg), cfg).float()
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in load_file(os.path.join(d, "model.safetensors")).items()}, strict=False)
    assert not unexpected and missing == ["lm_head.weight"], (missing, unexpected)
    model.lm_head.weight = model.backbone.embeddings.weight
    return model.eval()


def write_fixture(d, tok, cpu_model):
    """greedy.json in DIR: see PROMPT and CONFIDENT_PROMPTS."""
    def run(prompt):
        pids = tok.encode(prompt).ids
        gids, margins = greedy(cpu_model, pids, N_GREEDY)
        # cross-check: one prefill of prompt + continuation gives the same argmaxes
        with torch.no_grad():
            full = cpu_model(input_ids=torch.tensor([pids + gids]), use_cache=False).logits[0]
        assert full[len(pids) - 1:-1].argmax(-1).tolist() == gids, "greedy vs one prefill"
        return {"prompt": prompt, "prompt_ids": pids, "greedy_ids": gids, "greedy_text": tok.decode(gids),
                "greedy_margins": [round(m, 4) for m in margins], "greedy_min_margin": round(min(margins), 4)}

    fixture = run(PROMPT)
    fixture["full_text"] = tok.decode(fixture["prompt_ids"] + fixture["greedy_ids"])
    tried = []
    for p in CONFIDENT_PROMPTS:
        c = run(p)
        tried.append({"prompt": p, "greedy_min_margin": c["greedy_min_margin"]})
        if c["greedy_min_margin"] >= MIN_MARGIN:
            fixture["confident"] = c
            break
    fixture["confident_prompts_tried"] = tried
    fixture["oracle"] = ("transformers Mamba2ForCausalLM " + transformers.__version__ + " (torch " + torch.__version__
                         + "), fp32 on the CPU from the saved bf16 weights, mixer.norm replaced by the grouped "
                         "gate-first RMSNorm, use_cache=False, argmax of a full forward recompute at each step; "
                         "margins: top-1 minus top-2 logit")
    text = json.dumps(fixture, indent=2, ensure_ascii=False)
    text = re.sub(r"\[\s*([-0-9.e+,\s]+?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]", text)
    with open(os.path.join(d, "greedy.json"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    log(f"greedy fixture: prompt {PROMPT!r}, min margin {fixture['greedy_min_margin']:.3f}; confident: "
        f"{fixture.get('confident', {}).get('prompt')!r}\n{fixture['full_text']}")
    return fixture


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--fixture-only", action="store_true",
                    help="only (re)write OUT/greedy.json from the model and tokenizer already in OUT")
    ap.add_argument("--stdlib", default=sysconfig.get_paths()["stdlib"], help="corpus root")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--budget", type=float, default=360.0, help="seconds of optimiser steps")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: the budget decides)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--d-state", type=int, default=64)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512, help="training sequence length")
    ap.add_argument("--batch", type=int, default=64, help="sequences per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--max-file-bytes", type=int, default=400_000)
    ap.add_argument("--corpus-limit", type=int, default=0, help="use only the first N files (tests)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--fast-conv", action="store_true",
                    help="train with causal_conv1d_shift_add in place of transformers' torch conv (same values; "
                         "not used for the shipped model, not timed on the GPU; no gain with transformers 5.17, whose "
                         "chunk scan dominates a step)")
    a = ap.parse_args()
    if a.fixture_only:
        torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
        write_fixture(a.out, Tokenizer.from_file(os.path.join(a.out, "tokenizer.json")), load_saved(a.out))
        return
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    info = {
        "python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "args": vars(a),
        "command": "python3 data/train_demo_model.py " + " ".join(sys.argv[1:]),
    }
    log(f"{info['device']}  python {info['python']}  torch {info['torch']}  transformers {info['transformers']}  "
        f"tokenizers {info['tokenizers']}")

    # 1. corpus ----------------------------------------------------------------------------------
    files = read_corpus(a.stdlib, a.max_file_bytes)
    if a.corpus_limit:
        files = files[: a.corpus_limit]
    train_files = [(r, t) for r, t in files if not is_val(r)]
    val_files = [(r, t) for r, t in files if is_val(r)]
    n_bytes = lambda fs: sum(len(t.encode("utf-8")) for _, t in fs)
    info["corpus"] = {
        "root": a.stdlib, "files": len(files), "train_files": len(train_files), "val_files": len(val_files),
        "train_bytes": n_bytes(train_files), "val_bytes": n_bytes(val_files),
        "val_file_names": [r for r, _ in val_files],
    }
    log(f"corpus {a.stdlib}: {len(files)} files, train {len(train_files)} ({info['corpus']['train_bytes']/1e6:.1f} MB), "
        f"val {len(val_files)} ({info['corpus']['val_bytes']/1e6:.2f} MB)")

    # 2. tokenizer -------------------------------------------------------------------------------
    t0 = time.time()
    tok, tok_text = train_tokenizer([t for _, t in train_files], a.vocab)
    check_tokenizer(tok)
    with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok_text)
    enc = lambda fs: tok.encode_batch([t for _, t in fs], add_special_tokens=False)

    def stream(fs):
        parts = []
        for e in enc(fs):
            parts.append(np.array([BOS_ID] + e.ids + [EOS_ID], dtype=np.int32))
        return np.concatenate(parts)

    train_stream, val_stream = stream(train_files), stream(val_files)
    info["tokenizer"] = {
        "vocab_size": tok.get_vocab_size(), "seconds": round(time.time() - t0, 1),
        "train_tokens": int(len(train_stream)), "val_tokens": int(len(val_stream)),
        "bytes_per_token_train": info["corpus"]["train_bytes"] / len(train_stream),
    }
    log(f"tokenizer: {tok.get_vocab_size()} ids in {info['tokenizer']['seconds']} s; train {len(train_stream)} tokens "
        f"({info['tokenizer']['bytes_per_token_train']:.2f} bytes/token), val {len(val_stream)}")

    # 3. model -----------------------------------------------------------------------------------
    if a.fast_conv:
        import transformers.models.mamba2.modeling_mamba2 as hf_mamba2
        hf_mamba2.causal_conv1d_fn = causal_conv1d_shift_add
    cfg = make_config(a)
    model = build_model(cfg, device)
    n_params = sum(p.numel() for p in model.parameters())  # tied: counted once
    info["model"] = {"parameters": n_params, "config": {k: getattr(cfg, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "head_dim", "state_size", "n_groups",
        "conv_kernel", "expand", "chunk_size")}}
    log(f"model: {n_params/1e6:.2f} M parameters, {cfg.num_hidden_layers} layers, d={cfg.hidden_size}, "
        f"H={cfg.num_heads} P={cfg.head_dim} N={cfg.state_size} G={cfg.n_groups} Q={cfg.chunk_size}")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "conv1d" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    ac = torch.bfloat16 if device.type == "cuda" else None  # bf16 autocast on the GPU, fp32 on the CPU
    T, B = a.seq, a.batch
    data = torch.from_numpy(train_stream.astype(np.int64))
    n_start = len(train_stream) - T - 1
    total_steps = a.max_steps or 10**9
    measured = False
    history, val_history = [], []
    eval_every = max(1, a.max_steps // 4) if a.max_steps else 10**9
    best = None  # (val loss, step, state dict on the CPU)
    t_eval = 0.0  # seconds spent in validation, not counted in the budget
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def validate(step):
        nonlocal best, t_eval
        sync()
        te = time.time()
        vl, _ = evaluate(model, val_stream, T, 32, device, ac, max_windows=256)
        val_history.append({"step": step, "val_loss": round(vl, 4)})
        if best is None or vl < best[0]:
            best = (vl, step, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        t_eval += time.time() - te
        log(f"step {step:5d}  validation loss {vl:.4f} (first 256 windows){'  best' if best[1] == step else ''}")

    model.train()
    sync()
    t_train = time.time()
    t10 = None
    step = 0
    while step < total_steps:
        starts = rng.integers(0, n_start, B)
        seq = torch.stack([data[s: s + T + 1] for s in starts]).to(device, non_blocking=True)
        warmup = min(a.warmup, max(1, total_steps // 10))
        lr = lr_at(step, total_steps if measured or a.max_steps else 10**9, warmup, a.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = lm_loss(model, seq, ac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # no sync: read when logged
        opt.step()
        step += 1
        if step % 25 == 0 or step == 1 or step == total_steps:
            lv, gnorm = float(loss.detach()), float(gnorm)
            el = time.time() - t_train - t_eval
            history.append({"step": step, "loss": round(lv, 4), "lr": lr, "grad_norm": round(gnorm, 3),
                            "seconds": round(el, 1)})
            if not math.isfinite(lv):
                raise SystemExit(f"loss is {lv} at step {step}")
            if step % 100 == 0 or step == 1:
                log(f"step {step:5d}  loss {lv:.4f}  lr {lr:.2e}  |g| {gnorm:.2f}  {el:.0f}s  "
                    f"{step * B * T / el / 1e3:.0f}k tok/s")
        if not measured and not a.max_steps and step in (10, 40):
            sync()
            if step == 10:
                t10 = time.time()
            else:  # speed from steps 11..40 (the first steps pay for start-up work)
                per_step = (time.time() - t10) / 30
                left = a.budget - (time.time() - t_train)
                total_steps = max(step + 1, step + int(left / per_step))
                eval_every = max(50, total_steps // 6)
                measured = True
                log(f"{per_step*1000:.0f} ms/step ({B*T/per_step/1e3:.0f}k tok/s) -> {total_steps} steps "
                    f"in {a.budget:.0f} s, validation every {eval_every} steps")
        if step % eval_every == 0 and step < total_steps:
            validate(step)
        if time.time() - t_train - t_eval > a.budget * 1.15:
            log(f"wall-clock budget exceeded at step {step}: stopping")
            break
    sync()
    train_seconds = time.time() - t_train - t_eval
    validate(step)
    kept = best[1]
    if kept != step:
        log(f"validation was lowest at step {kept}: keeping those weights")
        model.load_state_dict(best[2])
    final_train = float(np.mean([h["loss"] for h in history[-4:]]))
    info["training"] = {
        "steps": step, "batch_sequences": B, "seq_len": T, "tokens_seen": step * B * T,
        "epochs": step * B * T / len(train_stream), "seconds": round(train_seconds, 1),
        "validation_seconds": round(t_eval, 1), "tokens_per_second": step * B * T / train_seconds,
        "peak_lr": a.lr, "warmup": a.warmup, "weight_decay": a.wd,
        "optimizer": "AdamW(0.9, 0.95), grad clip 1.0, linear warm-up, cosine to 10%",
        "precision": "fp32 master weights, bf16 autocast" if ac else "fp32",
        "final_train_loss_last_100_steps": final_train, "kept_step": kept, "history": history,
        "val_history": val_history,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }
    log(f"trained {step} steps, {step*B*T/1e6:.1f} M tokens in {train_seconds:.0f} s (+{t_eval:.0f} s validation)")

    # 4. evaluate, save in bf16, evaluate the saved weights ----------------------------------------
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # plain fp32 from here on
        torch.backends.cudnn.allow_tf32 = False
    val_fp32, n_val = evaluate(model, val_stream, T, 32, device, ac)
    sd = {k: v.detach().to(torch.bfloat16).cpu().contiguous() for k, v in model.state_dict().items()
          if k != "lm_head.weight"}
    save_file(sd, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    cfg.save_pretrained(a.out)
    gen = os.path.join(a.out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    # the saved weights, read back, in fp32 on the CPU: what the C engine computes
    cpu_model = load_saved(a.out)
    # bf16 weights evaluated on the training device in fp32
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    val_bf16, _ = evaluate(model, val_stream, T, 32, device, None)
    val_bytes = info["corpus"]["val_bytes"]
    info["validation"] = {
        "tokens": n_val, "loss_fp32_weights_bf16_autocast": val_fp32, "loss_bf16_weights_fp32": val_bf16,
        "bits_per_byte": val_bf16 * len(val_stream) / math.log(2) / val_bytes,
        "perplexity": math.exp(val_bf16),
    }
    log(f"validation loss {val_fp32:.4f} (training precision), {val_bf16:.4f} (saved bf16 weights, fp32), "
        f"{info['validation']['bits_per_byte']:.3f} bits/byte over {n_val} tokens")

    # 5. the greedy fixture: transformers, fp32, CPU, full recompute, grouped norm ---------------
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    write_fixture(a.out, tok, cpu_model)

    # a sample, for information
    model.eval()
    sp = tok.encode("import os\n").ids
    s_ids = sample(model, sp, 200, 0.8, 40, a.seed, device)
    with open(os.path.join(a.out, "sample_hf.txt"), "w", encoding="utf-8") as f:
        f.write(tok.decode(sp + s_ids))
    log("sample (T=0.8, top-k 40):\n" + tok.decode(sp + s_ids))

    info["outputs"] = {fn: os.path.getsize(os.path.join(a.out, fn)) for fn in sorted(os.listdir(a.out))}
    info["total_seconds"] = round(time.time() - T_START, 1)
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"done: {info['outputs']}")


if __name__ == "__main__":
    main()
