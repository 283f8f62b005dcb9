#!/usr/bin/env bash
# Turn latency of `mamba2 chat` over a long conversation (issue #18 item 5): the state has a constant
# size and each turn feeds only its own tokens, so a turn should cost the same at turn 50 as at turn 2.
#
#   bash bench/chat_latency.sh            50 turns on data/stdlib-mamba2 (16 tokens a reply) and, when it
#                                         exists, on the 8-layer 7B-width checkpoint $CK8 (default /tmp/ck8;
#                                         8 tokens a reply), cpu backend, 2 threads; writes results/chat_latency.md
#   TURNS=10 OUT=/tmp/x.md bash bench/chat_latency.sh     shorter, elsewhere
#
# Beside OUT it keeps each run's per-turn lines (chat_latency_demo.jsonl, chat_latency_ck8.jsonl), which
# notebooks-docs/03-benchmarks.ipynb draws (figures/chat_latency.png, linked from OUT).
#
# The turns come from a fixed list of user lines, in turn; every reply is greedy. The per-turn figures
# are mamba2 chat's --json-stats lines. $CK8 has no tokenizer: Mistral's v3 tokenizer (data/mistral-v3,
# 32768 ids, the vocabulary of Codestral-Mamba-7B whose shapes it has) is given with --tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
TURNS=${TURNS:-50}
THREADS=${THREADS:-2}
CK8=${CK8:-/tmp/ck8}
OUT=${OUT:-results/chat_latency.md}
PROG=${PROG:-./mamba2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 - "$TURNS" > "$tmp/turns.txt" <<'PY'
import sys
lines = ["def add(a, b):", "Write a function that reverses a list.", "class Stack:", "What does this code do?",
         "import os", "Now add a docstring.", "for i in range(10):", "Can you make it faster?",
         "Explain the error in the last function.", "Thanks. One more question about files."]
for i in range(int(sys.argv[1])):
    print(lines[i % len(lines)])
PY

runs=()
cmd_demo="mamba2 chat data/stdlib-mamba2 --backend cpu -t $THREADS -n 16 --json-stats FILE < turns.txt"
"$PROG" chat data/stdlib-mamba2 --backend cpu -t "$THREADS" -n 16 --json-stats "$tmp/demo.json" \
    < "$tmp/turns.txt" > /dev/null 2> "$tmp/demo.err"
cp "$tmp/demo.json" "$(dirname "$OUT")/chat_latency_demo.jsonl"
runs+=("data/stdlib-mamba2|$tmp/demo.json|$cmd_demo")
if [ -f "$CK8/config.json" ]; then
    cmd_ck8="mamba2 chat $CK8 --tokenizer data/mistral-v3/tokenizer.json --backend cpu -t $THREADS -n 8 --json-stats FILE < turns.txt"
    "$PROG" chat "$CK8" --tokenizer data/mistral-v3/tokenizer.json --backend cpu -t "$THREADS" -n 8 \
        --json-stats "$tmp/ck8.json" < "$tmp/turns.txt" > /dev/null 2> "$tmp/ck8.err"
    cp "$tmp/ck8.json" "$(dirname "$OUT")/chat_latency_ck8.jsonl"
    runs+=("$CK8 (8 layers, 7B width, random weights)|$tmp/ck8.json|$cmd_ck8")
else
    echo "chat_latency: $CK8 not found: the demo model only" >&2
fi

cpu=$(lscpu | grep 'Model name' | sed 's/.*: *//')
python3 - "$OUT" "$TURNS" "$THREADS" "$cpu" "${runs[@]}" <<'PY'
import json, sys, datetime
out, turns, threads, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
w = []
w.append("# `mamba2 chat`: turn latency over %d turns\n" % turns)
w.append("Made by `bash bench/chat_latency.sh` on %s; CPU: %s, %s threads, cpu backend, greedy.\n"
         % (datetime.date.today().isoformat(), cpu, threads))
w.append("Each turn feeds only its own tokens into the constant-size state (the history is never read again),\n"
         "so the cost of a turn should not grow with the conversation. *history* is the state's position\n"
         "before the turn (every earlier turn, reply and end of turn); *prefill* feeds the turn's tokens,\n"
         "*first token* adds the first sample; *ms/token* is the reply's decode rate. Turn 1 includes the\n"
         "first touch of the weights. The slope is a least-squares fit of prefill ms per prompt token against\n"
         "the history, over turns 2 to %d: a flat line is a slope near 0.\n" % turns)
w.append("The plot: [notebooks-docs/figures/chat_latency.png](../notebooks-docs/figures/chat_latency.png), drawn by\n"
         "[notebooks-docs/03-benchmarks.ipynb](../notebooks-docs/03-benchmarks.ipynb) from the per-turn lines kept\n"
         "beside this file (`chat_latency_demo.jsonl`, `chat_latency_ck8.jsonl`).\n")
for run in sys.argv[5:]:
    name, path, cmd = run.split("|")
    rows = [json.loads(l) for l in open(path) if l.strip()]
    w.append("\n## %s\n" % name)
    w.append("`%s`\n" % cmd)
    w.append("| turn | history (tokens) | prompt tokens | prefill ms | first token ms | reply tokens | ms/token |")
    w.append("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["turn"] == 1 or r["turn"] % 5 == 0:
            w.append("| %d | %d | %d | %.1f | %.1f | %d | %.2f |" % (r["turn"], r["position"], r["prompt_tokens"],
                     r["prefill_ms"], r["first_token_ms"], r["reply_tokens"], r["ms_per_token"]))
    rest = rows[1:]
    xs = [r["position"] for r in rest]
    ys = [r["prefill_ms"] / r["prompt_tokens"] for r in rest]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    a, z = rows[1], rows[-1]
    def median(v):
        v = sorted(v)
        return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
    early, late = rows[1:11], rows[-10:]
    w.append("")
    w.append("- turn 2 against turn %d: first token after %.1f ms and %.1f ms, %.2f and %.2f ms/token, with a history "
             "of %d and %d tokens." % (z["turn"], a["first_token_ms"], z["first_token_ms"], a["ms_per_token"],
                                        z["ms_per_token"], a["position"], z["position"]))
    w.append("- median of turns 2-11 against the last 10 (medians: the machine is shared): prefill %.2f and %.2f ms "
             "per prompt token, %.2f and %.2f ms/token, first token after %.1f and %.1f ms."
             % (median([r["prefill_ms"] / r["prompt_tokens"] for r in early]),
                median([r["prefill_ms"] / r["prompt_tokens"] for r in late]),
                median([r["ms_per_token"] for r in early]), median([r["ms_per_token"] for r in late]),
                median([r["first_token_ms"] for r in early]), median([r["first_token_ms"] for r in late])))
    w.append("- slope: %+.4f ms per prompt token for every 1000 tokens of history (mean %.2f ms per prompt token)."
             % (1000 * slope, my))
open(out, "w").write("\n".join(w) + "\n")
print("wrote", out)
PY
