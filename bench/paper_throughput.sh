#!/usr/bin/env bash
# The paper's memory-capped throughput claim (issue 20, item 3): generation throughput of this
# engine's Mamba-2 7B against a 7B Transformer (the Qwen2.5-7B architecture of S1.1-7B, random
# weights) on the same GPU, under the paper's 24 GB and 72 GB caps, for each generated length.
# Runs on the GPU machine; writes $OUT/paper_throughput.tsv and the runs' logs.
#
#   BIN=DIR            this project's bench_model (make device)            default .device
#   LLAMA=DIR          llama.cpp's CUDA build: bin/ (llama-batched-bench and its libraries), nccl-stub/
#   LLAMA_SRC=DIR      llama.cpp's source, for gguf-py (the Transformer's GGUF is written here)
#   CK=DIR             the 64-layer random 7B checkpoint (written by data/write_checkpoint.py if absent)
#   CAPS="24 72"  LENS="1024 4096 16384 32768 65536"  PROMPT=256  STEPS=16   (what is measured)
#   SIDES="mamba llama hf"                                                 (which engines)
#
# Method. A step of generation costs the Transformer more the longer its context, this engine the
# same at every position (its state has a fixed size), so neither side generates the whole length:
# - the Transformer (llama.cpp CUDA, flash attention, f16 key / value cache, one cache stream per
#   sequence): batch B = the most sequences whose caches of PROMPT + N + STEPS positions (rounded up
#   to 256, as llama.cpp does) fit under the cap beside the weights and buffers measured in a small
#   run, at most 256 (llama.cpp's limit). llama-batched-bench then prefills one prompt of L tokens,
#   copies its cache to the B sequences (-pps; each keeps its own copy) and times STEPS decode steps
#   of all B at L = PROMPT, PROMPT + N/2 and PROMPT + N - STEPS. The time of the N steps is the
#   trapezoid over those three (a step's time is linear in L: the weights plus B x L cached
#   positions read), plus B prompts' prefill at the best prefill rate of the three (the first
#   prompt of a process pays llama.cpp's one-time setup: 2-3k tokens/s where the others give 16-27k).
# - this engine: bench_model --mem-limit picks the largest batch whose states fit under the cap
#   (at most 256) and times decode steps there; time of N tokens = B prompts' prefill + N steps.
# - transformers (SDPA, static cache; bench/hf_transformer_step.py) at one point per cap, to show
#   which Transformer engine is the faster one here.
# throughput = B x N / time. Every run's peak GPU memory (nvidia-smi, the whole device) is recorded
# beside it: a run above its cap is marked, not hidden.
set -u
OUT=${OUT:-/tmp/paper-out}
BIN=${BIN:-.device}
LLAMA=${LLAMA:-/tmp/llama-cuda}
LLAMA_SRC=${LLAMA_SRC:-/tmp/llama-src/llama.cpp}
CK=${CK:-/tmp/ck64}
CAPS=${CAPS:-24 72}
LENS=${LENS:-1024 4096 16384 32768 65536}
P=${PROMPT:-256}
T=${STEPS:-16}
SIDES=${SIDES:-mamba llama hf}
QG=${QG:-/tmp/qwen25-7b-random-bf16.gguf}
KV_PER_TOKEN=57344 # f16 K and V: 28 layers x 2 x 4 key/value heads x 128 x 2 bytes
mkdir -p "$OUT"
TSV=$OUT/paper_throughput.tsv
[ -f "$TSV" ] || printf 'engine\tcap_gb\tgen_len\tbatch\tseconds\ttok_s\tpeak_gib\tnote\n' > "$TSV"
# nccl-stub/ (a stand-in libnccl.so.2) last: used only where the machine has no NCCL of its own
export LD_LIBRARY_PATH=$LLAMA/bin:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}:$LLAMA/nccl-stub
log() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
roundup256() { echo $(( ($1 + 255) / 256 * 256 )); }

# peak of nvidia-smi's memory.used (MiB) while a command runs; prints it on fd 3
with_peak() {
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > /tmp/mem.csv 2>/dev/null &
    local smi=$!
    "$@"
    local rc=$?
    kill $smi 2>/dev/null; wait $smi 2>/dev/null
    sort -n /tmp/mem.csv | tail -1 >&3
    return $rc
}

if [[ " $SIDES " == *" mamba "* ]]; then
    if [ ! -f "$CK/model.safetensors.index.json" ]; then
        log "writing the 64-layer random 7B checkpoint"
        python3 data/write_checkpoint.py --out "$CK" --layers 64 --threads 16 > /dev/null || exit 1
    fi
    for st in fp32 bf16; do
        log "this engine, $st state, caps $CAPS"
        caps=$(echo $CAPS | tr ' ' ,)
        timeout 300 "$BIN/bench_model" "$CK" --backend gpu $([ $st = bf16 ] && echo --state-bf16) --prompt-len "$P" \
            --gen-len 32 --mem-limit "$caps" > "$OUT/mamba_$st.txt" 2>&1
        cat "$OUT/mamba_$st.txt"
        # prefill ms of one prompt; then per cap: batch, tok/s, GiB
        pf=$(awk '/^prefill/ { for (i = 1; i <= NF; i++) if ($i == "ms,") print $(i - 1) }' "$OUT/mamba_$st.txt")
        awk '/^ +cap GB/ { on = 1; next } on && NF >= 4 && $2 ~ /^[0-9]+$/ { print $1, $2, $3, $4 }' "$OUT/mamba_$st.txt" |
        while read -r cap b tps gib; do
            for n in $LENS; do
                awk -v e="mamba2-$st" -v cap="$cap" -v n="$n" -v b="$b" -v tps="$tps" -v pf="$pf" -v gib="$gib" 'BEGIN {
                    s = b * pf / 1e3 + n * b / tps
                    printf "%s\t%s\t%d\t%d\t%.2f\t%.1f\t%s\t%s\n", e, cap, n, b, s, b * n / s, gib, (gib * 1.073741824 > cap ? "over the cap" : "") }' >> "$TSV"
            done
        done
    done
fi

if [[ " $SIDES " == *" llama "* ]]; then
    if [ ! -f "$QG" ]; then
        log "writing the random Qwen2.5-7B-shaped GGUF"
        PYTHONPATH=$LLAMA_SRC/gguf-py python3 bench/transformer_gguf.py data/mistral-v3/tokenizer.model.v3 "$QG" | tail -1 || exit 1
    fi
    BB=$LLAMA/bin/llama-batched-bench
    log "llama.cpp: weights and buffers (a 4,096-position run)"
    with_peak timeout 120 "$BB" -m "$QG" -ngl 99 -fa on -c 4096 -npp 128 -ntg 4 -npl 1 > "$OUT/llama_base.txt" 2>&1 3> /tmp/peak
    base_mib=$(cat /tmp/peak)
    grep -E "buffer size|CUDA0|S_TG|^\|" "$OUT/llama_base.txt" | tail -12
    overhead=$(( base_mib * 1048576 - 4096 * KV_PER_TOKEN ))
    echo "peak ${base_mib} MiB with 4,096 cached positions: weights, buffers and context ${overhead} bytes"
    for cap in $CAPS; do
        for n in $LENS; do
            seq_ctx=$(roundup256 $(( P + n + T )))
            b=$(( (cap * 1000000000 - overhead - 268435456) / (KV_PER_TOKEN * seq_ctx) ))
            note=""
            [ $b -gt 256 ] && b=256 && note="256 sequences (llama.cpp's limit)"
            if [ $b -lt 1 ]; then
                printf 'llama.cpp\t%s\t%d\t0\t\t0\t\tone sequence does not fit\n' "$cap" "$n" >> "$TSV"
                continue
            fi
            mid=$(( P + n / 2 )) end=$(( P + n - T ))
            log "llama.cpp: cap $cap GB, $n generated, batch $b, contexts $P,$mid,$end"
            with_peak timeout 240 "$BB" -m "$QG" -ngl 99 -fa on -c $(( b * seq_ctx )) -npp "$P,$mid,$end" -ntg "$T" \
                -npl "$b" -pps > "$OUT/llama_${cap}_$n.txt" 2>&1 3> /tmp/peak
            rc=$?
            peak=$(cat /tmp/peak)
            grep -E "^\|" "$OUT/llama_${cap}_$n.txt"
            # table rows: | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |
            awk -F'|' -v e=llama.cpp -v cap="$cap" -v n="$n" -v b="$b" -v p="$P" -v T="$T" -v peak="$peak" -v note="$note" -v rc=$rc '
                $2 + 0 > 0 { k++; step[k] = b / $9; if ($7 + 0 > spp) spp = $7 + 0 }
                END {
                    if (k != 3 || rc != 0) { printf "%s\t%s\t%d\t%d\t\t0\t%.2f\trun failed (rc %d, %d of 3 contexts)\n", e, cap, n, b, peak / 1024, rc, k; exit }
                    s = b * p / spp + n * (step[1] / 4 + step[2] / 2 + step[3] / 4)
                    gib = peak / 1024
                    if (gib * 1.073741824 > cap) note = note (note == "" ? "" : "; ") "over the cap"
                    printf "%s\t%s\t%d\t%d\t%.2f\t%.1f\t%.2f\t%s\n", e, cap, n, b, s, b * n / s, gib, note }' \
                "$OUT/llama_${cap}_$n.txt" >> "$TSV"
            tail -1 "$TSV"
        done
    done
fi

if [[ " $SIDES " == *" hf "* ]]; then
    for cap in $CAPS; do
        n=${HF_LEN:-32768}
        seq_ctx=$(( P + n + T + 1 ))
        # transformers' static cache is bf16 (the same 57,344 bytes a position); 15.2 GB of weights,
        # 2 GB for activations and the context
        b=$(( (cap * 1000000000 - 15230000000 - 2000000000) / (KV_PER_TOKEN * seq_ctx) ))
        [ $b -lt 1 ] && continue
        log "transformers: cap $cap GB, $n generated, batch $b, context $(( P + n ))"
        with_peak timeout 200 python3 bench/hf_transformer_step.py --batch "$b" --context $(( P + n )) --steps 8 \
            > "$OUT/hf_$cap.txt" 2>&1 3> /tmp/peak
        peak=$(cat /tmp/peak)
        tail -3 "$OUT/hf_$cap.txt"
        # a static cache costs the same at every position: N steps of the measured one
        python3 - "$OUT/hf_$cap.txt" "$cap" "$n" "$peak" >> "$TSV" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cap, n, peak = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) / 1024
if rows:
    r = rows[-1]
    s = n * r["ms_step"] / 1e3
    note = "static cache, eager, prefill not counted" + ("; over the cap" if peak * 1.073741824 > float(cap) else "")
    print(f"transformers\t{cap}\t{n}\t{r['batch']}\t{s:.2f}\t{r['batch'] * n / s:.1f}\t{peak:.2f}\t{note}")
else:
    print(f"transformers\t{cap}\t{n}\t0\t\t0\t{peak:.2f}\trun failed")
PY
        tail -1 "$TSV"
    done
fi
log "table ($TSV)"
column -t -s$'\t' "$TSV" 2>/dev/null || cat "$TSV"
