#!/usr/bin/env python3
"""Golden token ids for the C tokenizers, made by the two reference libraries.

    python3 data/tokenizer/make_golden.py        (from the repository root; needs
                                                  `pip install tokenizers sentencepiece`)

What it writes under data/tokenizer/ (all plain text, read by tests/test_tokenizer.c):

  texts.txt           the test texts, one per line, escaped: "\\\\" is a backslash,
                      "\\xHH" a byte (used for control bytes, DEL and bytes that are
                      not valid UTF-8); every other byte stands for itself.
  manifest.txt        one line per tokenizer checked: "TOKENIZER_PATH IDS_FILE STEP BASE"
                      (the ids file covers texts 0, STEP, 2*STEP, ...; BASE is "-" or
                      an earlier ids file with the same STEP, see "@" below).
  ids_*.txt           header lines "# ..." (provenance), "#pre IDS" / "#post IDS"
                      (what add_bos / add_special_tokens puts around the text), then
                      one line per text: the ids ("@": the same ids as in the BASE
                      file), a tab, and "=" when the reference's decode(ids) gives
                      the text back, else the
                      reference's decoded text (escaped as above).
  tiny/               small tokenizers made here to cover what the Mistral files do
                      not use (see make_tiny_hf / make_tiny_spm below). tiny_*.json
                      are cut from data/mistral-v3/tokenizer.json (Apache-2.0, see
                      data/mistral-v3/LICENCE); tiny_spm_*.model are trained here.

References: Hugging Face `tokenizers` for tokenizer.json (encode(text,
add_special_tokens=False), decode(ids) with its default skip_special_tokens=True)
and `sentencepiece` for .model files (encode(bytes), decode(ids)).

Text that is not valid UTF-8: sentencepiece takes the bytes and replaces each
invalid byte by U+FFFD. `tokenizers` only takes valid strings, so the text is
handed to it after the same repair (one U+FFFD per invalid byte); the C
tokenizer does that repair for both formats.

Everything is deterministic: the texts come from a seeded random generator and
the word lists below.
"""
import codecs
import hashlib
import json
import os
import random
import sys

import sentencepiece as spm
import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MISTRAL = os.path.join(ROOT, "data", "mistral-v3")

codecs.register_error("mamba2_per_byte", lambda e: ("\ufffd", e.start + 1))


def repair(b: bytes) -> str:
    """Bytes → str, each byte that does not start a valid UTF-8 sequence → U+FFFD."""
    return b.decode("utf-8", "mamba2_per_byte")


def escape(b: bytes) -> str:
    """One line of texts.txt / ids_*.txt: backslash and non-printable or invalid bytes escaped."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        if c == 0x5C:
            out.append("\\\\")
            i += 1
            continue
        if c >= 0x80:
            for n in (4, 3, 2):
                try:
                    ch = b[i:i + n].decode("utf-8")
                    if len(ch) == 1:
                        out.append(ch)
                        i += n
                        break
                except UnicodeDecodeError:
                    pass
            else:
                out.append("\\x%02X" % c)
                i += 1
            continue
        if c < 0x20 or c == 0x7F:
            out.append("\\x%02X" % c)
        else:
            out.append(chr(c))
        i += 1
    return "".join(out)


# ---------------------------------------------------------------- the texts

WORDS = ("the of and to in is was for on that with as by at from this be are it an or which has "
         "model state space sequence token layer kernel memory chunk matrix vector scan dual "
         "attention recurrent convolution gate norm weight bias tensor shape head group value "
         "Paris France weather today tomorrow forecast temperature Celsius function arguments "
         "quick brown fox jumps over lazy dog hello world example test python code return "
         "number string list dict tuple class import def print error file path read write "
         "antidisestablishmentarianism supercalifragilisticexpialidocious pneumonoultramicroscopic").split()

PHRASES = [
    "Le renard brun rapide saute par-dessus le chien paresseux. Ça coûte 3,50 € à l'école.",
    "Größere Äpfel schmecken süß; Straße, Fußgänger, Übermaß.",
    "¿Dónde está la biblioteca? ¡Añade más jalapeños, señor!",
    "Tiếng Việt có nhiều dấu: Hà Nội, Sài Gòn, phở bò.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "نص عربي للاختبار مع التشكيل: مَرْحَبًا بِكُمْ",
    "עברית: שָׁלוֹם עֲלֵיכֶם",
    "हिन्दी पाठ: नमस्ते दुनिया, क्षत्रिय।",
    "ภาษาไทย: สวัสดีครับ ผู้ใหญ่หาผ้าใหม่",
    "日本語のテキスト：東京は晴れ、気温は２５度です。カタカナとひらがな。",
    "中文测试：今天天气很好，我们去公园散步吧。龘靐齉爩",
    "한국어 텍스트: 안녕하세요, 세계! 훈민정음",
    "Ελληνικά και English mixed with Русский и 中文.",
    "ქართული ენა, Հայերեն լեզու, አማርኛ ቋንቋ",
    "Math: ∀x∈ℝ, ∃y: x² + y² ≤ 1 ⇒ ∑ᵢ aᵢ ≠ ∞ ∮ ∇·F dV",
    "Symbols: © ® ™ § ¶ † ‡ • … ‰ ′ ″ ‹ › « » ¡ ¿ ¤ ¢ £ ¥ ₹ ₿",
]

EMOJI = ["😀", "😂", "🥲", "🤖", "🚀", "🔥", "💡", "✅", "❌", "⭐", "❤️", "🧠", "🐍", "🦀", "🍕", "🎉",
         "👍🏽", "👋🏿", "🧑🏻‍💻", "👨‍👩‍👧‍👦", "👩‍❤️‍💋‍👨", "🏳️‍🌈", "🏴‍☠️", "🇫🇷", "🇯🇵", "🇺🇸",
         "1️⃣", "#️⃣", "🫠", "🪿", "🧜🏾‍♀️", "👁️‍🗨️", "🐻‍❄️", "🙇‍♂️", "☺", "☺️", "✍🏼", "🤷🏻‍♀️"]

CONTROL = ["<s>", "</s>", "<unk>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
           "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[IMG]", "[PREFIX]", "[MIDDLE]",
           "[SUFFIX]", "[control_12]", "[control_100]", "[control_748]", "[REFERENCE_DOC_0]",
           "[REFERENCE_DOC_7]", "[REFERENCE_DOC_19]"]
NEAR_CONTROL = ["[INST", "INST]", "[ INST]", "[inst]", "<s", "s>", "</ s>", "[control_749]", "[control_0]",
                "[REFERENCE_DOC_20]", "[/INST ]", "<<s>>", "[[INST]]", "<unk", "[TOOL_CALL]"]

COMBINING = [chr(c) for c in range(0x300, 0x370)] + ["\u0488", "\u20DD", "\u20E3", "\u0E31", "\u0E49",
                                                    "\u093F", "\u094D", "\u05B8", "\u064E", "\u0651"]

BLOCKS = [(0x20, 0x7E), (0xA0, 0x17F), (0x180, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x530, 0x58F),
          (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x10A0, 0x10FF), (0x1100, 0x11FF),
          (0x2000, 0x206F), (0x2190, 0x22FF), (0x2500, 0x25FF), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
          (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xFF00, 0xFFEF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF),
          (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xF0000, 0xF00FF)]


def words(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


def sentence(r):
    s = words(r, r.randint(3, 14))
    s = s[0].upper() + s[1:] + r.choice([".", "!", "?", ",", ":", ";", "", "..."])
    if r.random() < 0.3:
        s += " " + str(r.randint(0, 10 ** r.randint(1, 9)))
    return s


def ident(r):
    w = [r.choice(WORDS).lower() for _ in range(r.randint(1, 3))]
    return r.choice(["_".join(w), "".join(x.capitalize() for x in w), w[0]])


def python_code(r, indent):
    name, args = ident(r), ", ".join(ident(r) for _ in range(r.randint(0, 3)))
    lines = [f"def {name}({args}):", f'{indent}"""{sentence(r)}"""']
    depth = 1
    for _ in range(r.randint(2, 10)):
        kind = r.random()
        pad = indent * depth
        if kind < 0.25 and depth < 4:
            lines.append(f"{pad}for {ident(r)} in range({r.randint(1, 100)}):")
            depth += 1
        elif kind < 0.4 and depth < 4:
            lines.append(f"{pad}if {ident(r)} == {r.randint(0, 9)}:  # {words(r, 3)}")
            depth += 1
        elif kind < 0.5 and depth > 1:
            depth -= 1
            lines.append("")
        else:
            lines.append(f"{pad}{ident(r)} = {ident(r)}[{r.randint(0, 9)}] * {r.random():.4f}")
    lines.append(f"{indent}return {ident(r)}")
    return "\n".join(lines) + r.choice(["\n", "", "\n\n", "   \n"])


def c_code(r):
    n = ident(r)
    body = []
    for _ in range(r.randint(1, 6)):
        body.append(r.choice([
            f"\tfor (int i = 0; i < {r.randint(1, 64)}; i++) {{\n\t\t{n}[i] += 0x{r.randint(0, 65535):04x};\n\t}}",
            f"\tif (!{ident(r)}) return -1; /* {words(r, 4)} */",
            f'\tprintf("%d %s\\n", {r.randint(0, 99)}, "{words(r, 2)}");',
            f"    float {ident(r)} = {r.random():.6f}f;  // {words(r, 3)}",
        ]))
    return f"static int {n}(const float *x, size_t n)\n{{\n" + "\n".join(body) + "\n\treturn 0;\n}\n"


def json_code(r):
    obj = {ident(r): r.choice([r.randint(-999, 999), sentence(r), [1, 2, 3], {"k": None, "v": True}])
           for _ in range(r.randint(1, 5))}
    return json.dumps(obj, indent=r.choice([None, 2, 4, "\t"]), ensure_ascii=r.random() < 0.3)


def other_code(r):
    return r.choice([
        f"SELECT {ident(r)}, COUNT(*) FROM {ident(r)}\n  WHERE {ident(r)} > {r.randint(0, 99)}\n  GROUP BY 1;",
        f"<div class=\"{ident(r)}\">\n  <p>{sentence(r)}</p>\n  <a href=\"https://example.com/{ident(r)}?q={r.randint(1, 9)}&x=y\">link</a>\n</div>",
        f"{ident(r)}:\n  - name: {words(r, 2)}\n    value: {r.randint(0, 999)}\n  - name: \"{words(r, 1)}\"\n",
        f"all: {ident(r)}\n\n{ident(r)}.o: {ident(r)}.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n\t@echo done\n",
        f"#!/bin/sh\nset -eu\nfor f in *.txt; do\n    grep -c '{words(r, 1)}' \"$f\" || true\ndone\n",
        f"```python\nprint({r.randint(0, 9)} + {r.randint(0, 9)})\n```\n\n* item {words(r, 2)}\n* **bold** _it_",
        f"fn {ident(r)}(x: &[f32]) -> f32 {{\n    x.iter().map(|v| v * {r.random():.3f}).sum()\n}}",
    ])


def spaces(r, s):
    """Leading / trailing / repeated spaces, tabs and newlines around and inside s."""
    ws = [" ", "  ", "   ", "\t", "\n", "\r\n", " \t", "\t\t", "\n\n", " \n ", "\u00a0", "\u3000", "    "]
    parts = s.split(" ")
    out = parts[0]
    for p in parts[1:]:
        out += (r.choice(ws) if r.random() < 0.35 else " ") + p
    if r.random() < 0.6:
        out = r.choice(ws) * r.randint(1, 4) + out
    if r.random() < 0.6:
        out = out + r.choice(ws) * r.randint(1, 4)
    return out


def cjk(r):
    if r.random() < 0.4:
        return r.choice(PHRASES[10:13]) + r.choice(["", " ", "。", "abc", "123"])
    ranges = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3), (0x3000, 0x303F),
              (0xFF01, 0xFF5E)]
    out = []
    for _ in range(r.randint(1, 40)):
        a, b = r.choice(ranges)
        out.append(chr(r.randint(a, b)))
        if r.random() < 0.1:
            out.append(r.choice([" ", "、", "。", "a", "1", "\n"]))
    return "".join(out)


def emoji(r):
    out = []
    for _ in range(r.randint(1, 12)):
        out.append(r.choice(EMOJI))
        if r.random() < 0.3:
            out.append(r.choice([" ", "", " hi ", "\n", "!", "\u200d", "\ufe0f"]))
        if r.random() < 0.2:
            out.append(words(r, 2))
    return "".join(out)


def combining(r):
    base = r.choice(["e", "a", "o", "n", "i", "z", "A", "Z", "ก", "क", "ש", "ب", " ", "x"])
    out = []
    for _ in range(r.randint(1, 10)):
        out.append(r.choice([base, r.choice("aeiouyAEIOU"), r.choice(PHRASES[6:10])[:r.randint(1, 8)]]))
        out.extend(r.choice(COMBINING) for _ in range(r.randint(0, 6)))
        if r.random() < 0.2:
            out.append(" ")
    return "".join(out)


def invalid(r):
    """Valid text (bytes) with invalid UTF-8 inserted: lone continuation bytes, C0/C1/F5..FF,
    truncated sequences, over-long forms, encoded surrogates, code points above U+10FFFF."""
    src = r.choice([sentence(r), cjk(r), emoji(r), combining(r), ""]).encode()
    bad = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xf5", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"\xe2\x82", b"\xe2",
           b"\xf0\x9f\x98", b"\xf0\x9f", b"\xc3", b"\xe6\x97\xa5"[:2], "😀".encode()[1:], bytes([r.randint(0x80, 0xFF)])]
    out = bytearray(src)
    for _ in range(r.randint(1, 4)):
        pos = r.randint(0, len(out))
        out[pos:pos] = r.choice(bad)
    return bytes(out)


def with_controls(r):
    pieces = []
    for _ in range(r.randint(1, 6)):
        pieces.append(r.choice(CONTROL) if r.random() < 0.75 else r.choice(NEAR_CONTROL))
        pieces.append(r.choice(["", " ", "  ", "\n", sentence(r), " " + sentence(r) + " ", words(r, 1)]))
    if r.random() < 0.5:
        pieces.insert(0, r.choice(["", " ", sentence(r)]))
    return "".join(pieces)


def soup(r):
    if r.random() < 0.25:
        return bytes(r.randint(0, 255) for _ in range(r.randint(1, 40)))
    out = []
    for _ in range(r.randint(1, 50)):
        a, b = r.choice(BLOCKS)
        c = r.randint(a, b)
        if 0xD800 <= c <= 0xDFFF:
            c = 0x41
        out.append(chr(c))
    return "".join(out)


def numbers(r):
    return r.choice([
        f"{r.randint(0, 10 ** 12)}",
        f"{r.uniform(-1e6, 1e6):.{r.randint(0, 8)}f}",
        f"{r.randint(1, 28)}/{r.randint(1, 12)}/{r.randint(1900, 2100)} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
        f"https://{ident(r)}.example.org/{ident(r)}/{r.randint(1, 999)}?a={r.randint(0, 9)}#{ident(r)}",
        f"{ident(r)}@{ident(r)}.com",
        f"/usr/local/{ident(r)}/{ident(r)}.so.{r.randint(0, 9)}",
        f"x = {r.randint(0, 99)}e{r.randint(-9, 9)}; y = 0x{r.randint(0, 2 ** 32):X}; z = {r.random():.3e}",
        f"{r.randint(0, 9)}{r.randint(0, 9)}{r.randint(0, 9)}-{r.randint(100, 999)}-{r.randint(1000, 9999)}",
    ])


def document(r):
    gens = [lambda: sentence(r), lambda: python_code(r, "    "), lambda: cjk(r), lambda: emoji(r),
            lambda: with_controls(r), lambda: r.choice(PHRASES), lambda: c_code(r), lambda: numbers(r)]
    return "\n\n".join(r.choice(gens)() for _ in range(r.randint(3, 10)))


EDGE = ["", " ", "  ", "   ", " " * 17, "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\t \n \t",
        "a", " a", "a ", " a ", "  a  b  ", "a\nb", "a\tb", "a\r\nb", "▁", "▁▁", "▁a", "a▁", " ▁ ", "▁ ▁",
        "<unk>", "<s>", "</s>", "<s></s>", "<s> </s>", "[INST]", "[/INST]", "[INST][/INST]",
        "[INST] Hello [/INST]", " [INST]", "[INST] ", "x[INST]y", "[INST", "INST]", "[ INST]", "[inst]",
        "<s><s>", "</s></s>", "[REFERENCE_DOC_0]", "[REFERENCE_DOC_19]x", "[REFERENCE_DOC_1]0",
        " [REFERENCE_DOC_5] ", "[control_12]", "[control_748]", "[control_749]", "[TOOL_CALLS] [{\"a\": 1}]",
        "\x00", "a\x00b", "\x01\x02\x03", "\x7f", "\x1b[31mred\x1b[0m", "é", "e\u0301", "é\u0301\u0302",
        "한국어", "日本語", "中文", "😀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "1️⃣", "🇫🇷🇯🇵", "\ufffd", "\ufeffBOM",
        "\u200b", "zero\u200bwidth", "\u00a0", "\u3000", "a\u2028b\u2029c", "\U0010FFFF", "\U000E0001",
        "\uE000", "1234567890", "3.14159", "antidisestablishmentarianism", "a" * 64, "ab" * 40, "!!!???...",
        "    indented", "\tindented", "trailing    ", "a" + " " * 30 + "b", "\n" * 12, "\t" * 9, " \t" * 8,
        "'\"`", "\\", "\\\\n", "{}[]()<>", "@#$%^&*_+-=|~", "http://x.y/z?a=b&c=d", "C'est l'été !",
        "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞß", "ǅǈǋǲ", "ﬁﬂ", "Ⅻ", "①②③", "ｆｕｌｌｗｉｄｔｈ"]


def make_texts():
    r = random.Random(20240601)
    texts = [t.encode() for t in EDGE]
    gens = [
        (300, lambda: python_code(r, r.choice(["    ", "  ", "\t"])).encode()),
        (120, lambda: c_code(r).encode()),
        (80, lambda: json_code(r).encode()),
        (120, lambda: other_code(r).encode()),
        (300, lambda: spaces(r, r.choice([sentence(r), words(r, 6), r.choice(PHRASES)])).encode()),
        (200, lambda: (sentence(r) if r.random() < 0.6 else r.choice(PHRASES)).encode()),
        (150, lambda: cjk(r).encode()),
        (150, lambda: emoji(r).encode()),
        (150, lambda: combining(r).encode()),
        (170, lambda: invalid(r)),
        (260, lambda: with_controls(r).encode()),
        (200, lambda: (lambda s: s if isinstance(s, bytes) else s.encode())(soup(r))),
        (80, lambda: numbers(r).encode()),
        (25, lambda: document(r).encode()),
    ]
    for count, gen in gens:
        texts.extend(gen() for _ in range(count))
    return texts


# ---------------------------------------------------------------- references

class HF:
    def __init__(self, path):
        self.tok = Tokenizer.from_file(path)

    def encode(self, b):
        return self.tok.encode(repair(b), add_special_tokens=False).ids

    def encode_special(self, b):
        return self.tok.encode(repair(b), add_special_tokens=True).ids

    def decode(self, ids):
        return self.tok.decode(ids).encode()


class SPM:
    def __init__(self, path):
        self.sp = spm.SentencePieceProcessor(model_file=path)

    def encode(self, b):
        return self.sp.encode(b)

    def encode_special(self, b):
        return self.sp.encode(b, add_bos=True)

    def decode(self, ids):
        return self.sp.decode(ids).encode()


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_ids(ref, tok_path, texts, step, out_name, manifest, base=None):
    """One ids file. The special tokens must be the same prefix/suffix for every text. With `base`
    (the ids of another file, by text index), an ids field equal to the base's is written "@"."""
    probe = b"hello"
    ids, full = ref.encode(probe), ref.encode_special(probe)
    k = next(j for j in range(len(full) - len(ids) + 1) if full[j:j + len(ids)] == ids)
    pre, post = full[:k], full[k + len(ids):]
    lines = [f"# {os.path.relpath(tok_path, ROOT)} sha256 {sha256(tok_path)}",
             f"# tokenizers {tokenizers.__version__}, sentencepiece {spm.__version__}; every text i with i % {step} == 0",
             "#pre " + " ".join(map(str, pre)), "#post " + " ".join(map(str, post))]
    n_same = 0
    all_ids = {}
    for i in range(0, len(texts), step):
        x = texts[i]
        ids = ref.encode(x)
        all_ids[i] = ids
        assert ref.encode_special(x) == pre + ids + post, (tok_path, i)
        back = ref.decode(ids)
        dec = "=" if back == x else escape(back)
        n_same += back == x
        field = "@" if base is not None and base.get(i) == ids else " ".join(map(str, ids))
        lines.append(field + "\t" + dec)
    with open(os.path.join(HERE, out_name), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    base_name = base["__name__"] if base is not None else "-"
    manifest.append(f"{os.path.relpath(tok_path, ROOT)} data/tokenizer/{out_name} {step} {base_name}")
    n = (len(texts) + step - 1) // step
    print(f"{out_name}: {n} texts, decode gives the text back for {n_same}", file=sys.stderr)
    all_ids["__name__"] = "data/tokenizer/" + out_name
    return all_ids


# ---------------------------------------------------------------- tiny tokenizers

def tiny_vocab(n_merges):
    """A small BPE derived from the Mistral tokenizer.json: its first n_merges merges, the tokens they
    need, the ASCII and Latin-1 characters, the 256 byte tokens; ids renumbered from 0."""
    j = json.load(open(os.path.join(MISTRAL, "tokenizer.json"), encoding="utf-8"))
    vocab = j["model"]["vocab"]
    merges = j["model"]["merges"][:n_merges]
    keep = {"<unk>", "<s>", "</s>", "[INST]", "[/INST]"}
    keep |= {"<0x%02X>" % b for b in range(256)}
    keep |= {k for k in vocab if len(k) == 1 and (ord(k) < 0x100 or k == "▁")}
    for a, b in merges:
        keep |= {a, b, a + b}
    names = sorted(keep, key=lambda k: vocab[k])
    return {k: i for i, k in enumerate(names)}, merges


def added(content, id_, special, lstrip=False, rstrip=False, normalized=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def replace(pattern, content):
    return {"type": "Replace", "pattern": {"String": pattern}, "content": content}


def make_tiny_hf():
    """Three tokenizer.json files covering the options the Mistral files do not use."""
    out = {}
    vocab, merges = tiny_vocab(1500)
    n = len(vocab)
    base_added = [added("<unk>", vocab["<unk>"], True), added("<s>", vocab["<s>"], True),
                  added("</s>", vocab["</s>"], True), added("[INST]", vocab["[INST]"], True),
                  added("[/INST]", vocab["[/INST]"], True)]

    # a: merges as "a b" strings; Metaspace always + split; lstrip/rstrip and a `normalized` added
    #    token; <s> $A </s>.
    a = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": base_added + [added("<tool>", n, False, lstrip=True, rstrip=True),
                                       added("hello world", n + 1, False, normalized=True)],
         "normalizer": None,
         "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
         "post_processor": {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]},
                                               "</s>": {"id": "</s>", "ids": [vocab["</s>"]], "tokens": ["</s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [replace("▁", " "), {"type": "ByteFallback"}, {"type": "Fuse"},
                                                      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                   "vocab": vocab, "merges": [f"{x} {y}" for x, y in merges]}}
    out["tiny_a.json"] = a

    # b: no byte fallback (unknown characters → <unk>, not fused), ignore_merges; Metaspace never,
    #    no split; Replace normalizers; no post-processor; Strip of two spaces. (Strip with stop > 0
    #    is implemented but not checked: tokenizers 0.23 panics on short tokens with it.)
    vb = {k: v for k, v in vocab.items() if not (k.startswith("<0x") and len(k) == 6)}
    vb = {k: i for i, k in enumerate(sorted(vb, key=lambda k: vb[k]))}
    b = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [added("<unk>", vb["<unk>"], True), added("<|sep|>", len(vb), True, rstrip=True)],
         "normalizer": {"type": "Sequence", "normalizers": [replace("\t", "    "), replace("\r\n", "\n")]},
         "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": False},
         "post_processor": None,
         "decoder": {"type": "Sequence", "decoders": [replace("▁", " "), {"type": "Fuse"},
                                                      {"type": "Strip", "content": " ", "start": 2, "stop": 0}]},
         "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                   "vocab": vb, "merges": [[x, y] for x, y in merges]}}
    out["tiny_b.json"] = b

    # c: the legacy normaliser (Prepend + Replace) with a `normalized` added token, fused unknowns,
    #    Metaspace first with split; template "[INST] $A [/INST]"; a Strip before Fuse (per token).
    c = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [added("<unk>", vb["<unk>"], True), added("[INST]", vb["[INST]"], True),
                          added("[/INST]", vb["[/INST]"], True), added("foo bar", len(vb), False, normalized=True),
                          added("<br>", len(vb) + 1, False, lstrip=True)],
         "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace(" ", "▁")]},
         "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
         "post_processor": {"type": "TemplateProcessing",
                            "single": [{"SpecialToken": {"id": "[INST]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"SpecialToken": {"id": "[/INST]", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"[INST]": {"id": "[INST]", "ids": [vb["[INST]"]], "tokens": ["[INST]"]},
                                               "[/INST]": {"id": "[/INST]", "ids": [vb["[/INST]"]], "tokens": ["[/INST]"]}}},
         "decoder": {"type": "Sequence", "decoders": [replace("▁", " "), {"type": "Strip", "content": " ", "start": 1, "stop": 0},
                                                      {"type": "Fuse"}]},
         "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "ignore_merges": False,
                   "vocab": vb, "merges": [[x, y] for x, y in merges]}}
    out["tiny_c.json"] = c
    paths = []
    os.makedirs(os.path.join(HERE, "tiny"), exist_ok=True)
    for name, obj in out.items():
        path = os.path.join(HERE, "tiny", name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        Tokenizer.from_file(path)  # must load in the reference
        paths.append(path)
    return paths


def make_tiny_spm(texts):
    """Two small SentencePiece BPE models trained here (single thread, fixed seed) on the test texts."""
    corpus = os.path.join(HERE, "tiny", "corpus.tmp")
    with open(corpus, "w", encoding="utf-8") as f:
        for t in texts:
            s = repair(t).replace("\r", " ")
            for line in s.split("\n"):
                if line.strip():
                    f.write(line + "\n")
    paths = []
    common = dict(input=corpus, model_type="bpe", character_coverage=0.98, num_threads=1,
                  seed_sentencepiece_size=100000, shuffle_input_sentence=False, minloglevel=2,
                  input_sentence_size=0)
    # a: remove_extra_whitespaces, no byte fallback (unknowns → one <unk> per run), user-defined pieces.
    prefix = os.path.join(HERE, "tiny", "tiny_spm_a")
    spm.SentencePieceTrainer.train(model_prefix=prefix, vocab_size=1200, byte_fallback=False, remove_extra_whitespaces=True,
                                   normalization_rule_name="identity", user_defined_symbols=["<tool>", "hello world", "▁x▁"],
                                   control_symbols=["[INST]", "[/INST]"], **common)
    paths.append(prefix + ".model")
    # b: byte fallback, no dummy prefix, spaces kept as they are.
    prefix = os.path.join(HERE, "tiny", "tiny_spm_b")
    spm.SentencePieceTrainer.train(model_prefix=prefix, vocab_size=1500, byte_fallback=True, remove_extra_whitespaces=False,
                                   add_dummy_prefix=False, normalization_rule_name="identity",
                                   user_defined_symbols=["[REFERENCE_DOC_1]", "[REFERENCE_DOC_10]"], **common)
    paths.append(prefix + ".model")
    os.remove(corpus)
    for p in paths:
        os.remove(p[:-len(".model")] + ".vocab")
    return paths


def main():
    texts = make_texts()
    with open(os.path.join(HERE, "texts.txt"), "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            f.write(escape(t) + "\n")
    print(f"texts.txt: {len(texts)} texts, {sum(map(len, texts))} bytes", file=sys.stderr)
    manifest = []
    base = None
    for name, ref in [("tokenizer.json", HF), ("tokenizer_legacy.json", HF), ("tokenizer.model.v3", SPM)]:
        path = os.path.join(MISTRAL, name)
        base = write_ids(ref(path), path, texts, 1, f"ids_{name.replace('.', '_')}.txt", manifest, base)
    for path in make_tiny_hf():
        write_ids(HF(path), path, texts, 6, "tiny/ids_" + os.path.basename(path).replace(".", "_") + ".txt", manifest)
    for path in make_tiny_spm(texts):
        write_ids(SPM(path), path, texts, 6, "tiny/ids_" + os.path.basename(path).replace(".", "_") + ".txt", manifest)
    with open(os.path.join(HERE, "manifest.txt"), "w", newline="\n") as f:
        f.write("# tokenizer  ids-file  step  base   (made by make_golden.py)\n" + "\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
