#!/usr/bin/env bash
# One call on the GPU machine: the GPU tests, compute-sanitizer, the kernel benchmark and the
# whole-model benchmarks on a random-weight Codestral-7B checkpoint written there.
# Binaries are built on the development machine (make STATIC_DEPS=1) and carried in .device/.
# What comes back in $OUT: gpu.txt, tests.log, kernels.txt, decode_gemm.txt, ncu_decode_gemm.txt, ncu_ssd.txt,
# bench_fp32.json, bench_bf16.json, profile.txt, hf.txt, ab.txt, ncu_gemv.txt, sweep.txt, ncu_batched.txt,
# q8gemm.txt, q8bench.txt, q8table.txt, skinny.txt, llamacuda.txt, q8stream.txt, repeat.txt, prefill_ab.txt.
# Usage: bash gpu/device_run.sh [STEPS]   STEPS: comma list of test,sanitize,kernels,decodegemm,ncudecodegemm,ncu,ncuprefill,ncugemv,
#        ncucublas,ncustep,model,sweep,profile,profilebatched,power,ab,prefillab,q8gemm,skinny,llamacuda,q8stream,ncuq8,repeat,hf (default: test,sanitize,kernels,model,profile,hf)
# DEADLINE_S: seconds after which no further step starts and a sweep or A/B round stops between runs
# (device time is scarce: a call ends with what it measured rather than at its time limit). The
# checkpoint the model steps need is written in the background while the tests run.
set -u
OUT=${OUT:-/tmp/mamba2-out}
mkdir -p "$OUT"
STEPS=${1:-test,sanitize,kernels,model,profile,hf}
BIN=${BIN:-.device}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
CK=${CK:-/tmp/ck64}
T0=$(date +%s)
# past DEADLINE_S (when set): no further step, no further run of a sweep or an A/B round
late() { [ -n "${DEADLINE_S:-}" ] && (( $(date +%s) - T0 > DEADLINE_S )); }
has() { [[ ",$STEPS," == *",$1,"* ]] && ! late; }
MODEL_STEPS="model q8gemm skinny llamacuda q8stream ncuq8 hf profile profilebatched power ab prefillab sweep ncustep ncuprefill"
wants_model() { local st; for st in $MODEL_STEPS; do has "$st" && return 0; done; return 1; }
log() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
# The (binary, setting) pairs of an A/B round, one "BINARY SETTING" a line: every executable
# bench_model in $BIN and $BIN/var*/ under each word of $1 (settings VAR=VALUE[,VAR=VALUE...], "-"
# for none), in reverse order when round $2 is even
ab_runs() {
    local bin envset
    for bin in "$BIN"/bench_model "$BIN"/var*/bench_model; do
        [ -x "$bin" ] || continue
        for envset in ${1:--}; do echo "$bin $envset"; done
    done | if (( $2 % 2 == 0 )); then tac; else cat; fi
}
# The environment words of an ab_runs setting: VAR=VALUE ... (nothing for "-")
ab_env() { [ "$1" = - ] || echo "${1//,/ }"; }

log machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
nproc; free -g | head -2
CK_PID=
if wants_model && [ ! -f "$CK/model.safetensors.index.json" ]; then
    echo "writing the 64-layer random 7B checkpoint in the background ($CK)"
    python3 data/write_checkpoint.py --out "$CK" --layers 64 --threads 16 > /tmp/ck.log 2>&1 &
    CK_PID=$!
fi
# the checkpoint, once the background writer is done (written here if it failed)
checkpoint() {
    if [ -n "$CK_PID" ]; then wait "$CK_PID" || tail -3 /tmp/ck.log; CK_PID=; echo "checkpoint ready after $(( $(date +%s) - T0 )) s"; fi
    [ -f "$CK/model.safetensors.index.json" ] || python3 data/write_checkpoint.py --out "$CK" --layers 64 --threads 16 > /dev/null
}

if has test; then
    log "GPU tests"
    timeout 300 "$BIN/run_tests" gpu 2>&1 | tee "$OUT/tests.log" | tail -60
    timeout 120 "$BIN/run_tests" demo_model_gpu 2>&1 | tee -a "$OUT/tests.log" | tail -12
    # a failure's test and assertions, wherever they are in the log (the tail above may not reach them)
    grep -E "random seed|Test: |FAILED|^ +[0-9]+\. " "$OUT/tests.log" | grep -B1 -A8 "FAILED" | head -60
fi
if has repeat; then
    # one GPU test run REPEAT_N times (default 200), each with a fresh seed, its printed lines kept:
    # the distribution a test's bound on fresh random draws should come from (REPEAT_TEST names it)
    log "run_tests gpu '${REPEAT_TEST:-random model with N=128: prefill and batched steps vs ref}' x ${REPEAT_N:-200} (repeat.txt)"
    for i in $(seq "${REPEAT_N:-200}"); do
        timeout 60 "$BIN/run_tests" gpu "${REPEAT_TEST:-random model with N=128: prefill and batched steps vs ref}" 2>&1 \
            | grep -E "random seed|^    [^ ].*[0-9]e-[0-9]|FAILED|^ +asserts"
    done > "$OUT/repeat.txt"
    echo "runs: $(grep -c 'random seed' "$OUT/repeat.txt"), failed: $(grep -c FAILED "$OUT/repeat.txt")"
fi
if has sanitize; then
    log "compute-sanitizer memcheck on the GPU suite"
    timeout ${SANITIZE_TIMEOUT:-300} compute-sanitizer --tool memcheck --print-limit 20 "$BIN/run_tests" gpu > /tmp/sanitizer.log 2>&1
    echo "exit $?" | tee -a "$OUT/tests.log"
    grep -E "ERROR SUMMARY|Run Summary|asserts|tests |=====" /tmp/sanitizer.log | tail -25 | tee -a "$OUT/tests.log"
fi
if has kernels; then
    log "kernel benchmark"
    timeout 300 "$BIN/bench_gpu_kernels" 2>&1 | tee "$OUT/kernels.txt"
fi
if has decodegemm; then
    log "decode GEMM (gemm_decode.cu) against cuBLAS alone, 8 to 64 sequences (decode_gemm.txt)"
    timeout 120 "$BIN/bench_gpu_kernels" --decode-gemm 2>&1 | tee "$OUT/decode_gemm.txt"
fi
if has ncudecodegemm; then
    # the first launch of the decode GEMM: in_proj at 8 sequences (NCU_GD_SKIP launches skipped first)
    log "Nsight Compute: the decode GEMM's first launch after ${NCU_GD_SKIP:-0} (ncu_decode_gemm.txt)"
    timeout 150 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section SchedulerStats -k regex:gemm_decode -s "${NCU_GD_SKIP:-0}" -c 1 "$BIN/bench_gpu_kernels" --decode-gemm \
        > "$OUT/ncu_decode_gemm.txt" 2>&1
    echo "exit $?"; grep -E "gemm_decode_kernel|Duration|DRAM Throughput|L2 Cache Throughput|Issued Warp|No Eligible|Active Warps|Eligible Warps|stalled" \
        "$OUT/ncu_decode_gemm.txt" | head -30
fi
if has ncu; then
    log "Nsight Compute on the chunked SSD's two matrix kernels (first launch of each)"
    timeout 240 ncu --clock-control none -k regex:'ssd_(state_chain|chunk_scan)' -c 2 --set full "$BIN/bench_gpu_kernels" \
        > "$OUT/ncu_ssd.txt" 2>&1
    echo "exit $?"; grep -E "ssd_chunk|Duration|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Executed Ipc Active|Issued Instructions  |Eligible Warps|stalled|Block Limit Shared" "$OUT/ncu_ssd.txt" | head -30
fi
if has ncuprefill; then
    log "Nsight Compute: one prefill layer's kernels other than the GEMMs (appended to ncu_ssd.txt)"
    checkpoint
    timeout 240 ncu --clock-control none --section SpeedOfLight -k regex:'rmsnorm|conv_|dt_prefill|ssd_|gated_norm' -c 9 \
        "$BIN/bench_model" "$CK" --backend gpu --prompt-len 4096 --gen-len 1 --batch 1 > /tmp/ncu_prefill.txt 2>&1
    echo "exit $?"; grep -E "^  [a-z_].*\(|Duration|DRAM Throughput|Compute \(SM\) Throughput" /tmp/ncu_prefill.txt | tee -a "$OUT/ncu_ssd.txt"
fi
if has ncugemv; then
    log "Nsight Compute: the one-sequence GEMVs without prologue of in_proj (8x2) and out_proj (4x2), first launch of each (ncu_gemv.txt)"
    for k in ILi1ELi0ELi0ELi8ELi2E ILi1ELi0ELi0ELi4ELi2E; do
        timeout 120 ncu --clock-control none --kernel-name-base mangled -k regex:"gemv_kernel$k" -c 1 --set full \
            "$BIN/bench_gpu_kernels" >> "$OUT/ncu_gemv.txt" 2>&1
        echo "exit $?"
    done
    grep -E "gemv_kernel|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Waves Per SM|Eligible Warps|Issued Warp|L1/TEX Hit|L2 Hit|Stall|stall" "$OUT/ncu_gemv.txt" | head -80
fi
if has ncucublas; then
    log "Nsight Compute: cuBLAS at the decode shapes (8-64 columns), one call each (ncu_batched.txt)"
    timeout 150 ncu --clock-control none --section LaunchStats --section SpeedOfLight -k regex:'^(?!fill_random).*' \
        "$BIN/bench_gpu_kernels" --cublas-once > /tmp/ncu_cublas.txt 2>&1
    echo "exit $?"
    grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Grid Size|Registers Per|Block Size" /tmp/ncu_cublas.txt | tee "$OUT/ncu_batched.txt" | head -120
fi
if wants_model; then
    log "the 64-layer random 7B checkpoint"
    checkpoint
    [ -x "$BIN/mamba2" ] && "$BIN/mamba2" info "$CK" | grep -E "parameters|weights|state"
fi
if has model; then
    log "7B on the GPU, fp32 states: prefill, decode at batch 1/4/64, long contexts, memory caps"
    timeout 400 "$BIN/bench_model" "$CK" --backend gpu --prompt-len 4096 --gen-len 64 --batch 1,4,64 \
        --positions 1024,4096,16384,65536 --mem-limit 24,72 --json "$OUT/bench_fp32.json" 2>&1
    log "7B on the GPU, bf16 states"
    timeout 300 "$BIN/bench_model" "$CK" --backend gpu --state-bf16 --prompt-len 4096 --gen-len 64 --batch 64,256 \
        --mem-limit 24,72 --json "$OUT/bench_bf16.json" 2>&1
fi
if has ncustep; then
    log "Nsight Compute: the SSD step in the model at batch 64, bf16 state (first launch; var0's too)"
    for spec in "$BIN/bench_model:ssd_step:1" "$BIN/var0/bench_model:ssd_step:1"; do
        IFS=: read -r bin kre cnt <<< "$spec"
        [ -x "$bin" ] || continue
        echo "## $bin" >> "$OUT/ncu_batched.txt"
        timeout 200 ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \
            --section WarpStateStats --section MemoryWorkloadAnalysis -k regex:"$kre" -c "$cnt" \
            "$bin" "$CK" --backend gpu --prompt-len 16 --gen-len 1 --state-bf16 --batch 64 > /tmp/ncu_model.txt 2>&1
        echo "exit $?"
        grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Grid Size|Waves Per SM|Eligible Warps|Dynamic Shared|L1/TEX Hit|L2 Hit" \
            /tmp/ncu_model.txt | tee -a "$OUT/ncu_batched.txt" | head -80
    done
fi
if has sweep; then
    # Decode at every batch of the issue (SWEEP_BATCHES), fp32 and bf16 state, every bench_model in
    # $BIN and $BIN/var*/ (those at SWEEP_VAR_BATCHES, default the same) under each environment
    # setting of SWEEP_ENVS (as PREFILL_ENVS below; default "-", none), alternated (SWEEP_REPS rounds,
    # default 1, the order reversed every other round); the roofline (copy bandwidth) is measured in
    # each run.
    log "decode sweep: batch ${SWEEP_BATCHES:-1,2,4,8,16,32,64,128,256}, fp32 and bf16 state, per binary and setting"
    for rep in $(seq "${SWEEP_REPS:-1}"); do
        mapfile -t runs < <(ab_runs "${SWEEP_ENVS:--}" "$rep")
        for run in "${runs[@]}"; do
            read -r bin label <<< "$run"
            envset=$(ab_env "$label")
            for sb in fp32 bf16; do
                late && { echo "## deadline: the rest of the sweep skipped"; break 3; }
                echo "## $bin $label $sb round $rep ($(date -u +%H:%M:%S))"
                batches=${SWEEP_BATCHES:-1,2,4,8,16,32,64,128,256}
                [ "$bin" = "$BIN/bench_model" ] || batches=${SWEEP_VAR_BATCHES:-$batches}
                env $envset timeout 300 "$bin" "$CK" --backend gpu $([ $sb = bf16 ] && echo --state-bf16) --prompt-len 64 \
                    --gen-len "${SWEEP_GEN:-32}" --batch "$batches" 2>&1 \
                    | grep -E "ceilings|^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+% "
            done
        done
    done | tee "$OUT/sweep.txt"
    echo; echo "tok/s (% of the weights + state traffic time at the copy bandwidth), per binary, setting and state:"
    awk '/^## / { key = $2 " " $3 " " $4; next } /ceilings/ { next }
         { v[key, $1] = v[key, $1] sprintf(" %s (%s)", $3, $5); keys[key] = 1; b[$1] = 1 }
         END { for (k in keys) { printf "%s:", k; for (n = 1; n <= 256; n *= 2) if ((k, n) in v) printf "  b%d%s", n, v[k, n]; print "" } }' \
        "$OUT/sweep.txt" | sort
fi
if has profilebatched; then
    log "per-kernel profile (no graphs, events between kernels): batch 16 fp32 and batch 64 bf16 (PROFILE_BINS, default all)"
    for bin in ${PROFILE_BINS:-"$BIN"/bench_model "$BIN"/var*/bench_model}; do
        [ -x "$bin" ] || continue
        for args in "--batch 16" "--state-bf16 --batch 64"; do
            MAMBA2_GPU_PROFILE=1 timeout 200 "$bin" "$CK" --backend gpu --prompt-len 16 --gen-len 8 $args 2>&1 \
                | grep -E "  step" | sed "s|^|$bin $args: |" | tee -a "$OUT/profile.txt"
        done
    done
fi
if has profile; then
    log "per-kernel profile (no graphs, events between kernels): batch 1, batch 4, then batch 64 with bf16 states"
    MAMBA2_GPU_PROFILE=1 timeout 200 "$BIN/bench_model" "$CK" --backend gpu --prompt-len 4096 --gen-len 16 --batch 1 2>&1 | tail -22 | tee "$OUT/profile.txt"
    MAMBA2_GPU_PROFILE=1 timeout 200 "$BIN/bench_model" "$CK" --backend gpu --prompt-len 64 --gen-len 16 --batch 4 2>&1 | grep -E "step|GPU profile" | sed 's/^/batch 4: /' | tee -a "$OUT/profile.txt"
    MAMBA2_GPU_PROFILE=1 timeout 200 "$BIN/bench_model" "$CK" --backend gpu --state-bf16 --prompt-len 512 --gen-len 16 --batch 64 2>&1 | grep -E "step|GPU profile" | tee -a "$OUT/profile.txt"
fi
if has power; then
    log "power and SM clock during prefills of 4096 tokens (nvidia-smi every 50 ms; appended to gpu.txt)"
    nvidia-smi --query-gpu=power.draw,power.limit,clocks.sm --format=csv,noheader,nounits -lms 50 > /tmp/power.csv 2>&1 &
    SMI=$!
    timeout 120 "$BIN/bench_model" "$CK" --backend gpu --prompt-len 4096 --gen-len 1 --batch 1 2>&1 | grep prefill
    kill $SMI
    awk -F', ' '$1+0 > 200 { n++; p += $1; c += $3; if ($1 > pm) pm = $1; if (cm == 0 || $3 < cm) cm = $3; lim = $2 }
        END { if (n) printf "samples above 200 W: %d, mean %.0f W (max %.0f, limit %s W), SM clock mean %.0f MHz (min %d)\n", n, p / n, pm, lim, c / n, cm;
              else print "no samples above 200 W" }' /tmp/power.csv | tee -a "$OUT/gpu.txt"
fi
if has ab; then
    # A/B of decode: every bench_model in $BIN and $BIN/var*/ (say, the commit before), alternated
    # AB_REPS times (default 2) so that drift hits every side; AB_BATCHED=0 leaves out batch 64 and
    # 256 (the cuBLAS path) where only the GEMV path (up to 4 sequences) differs
    log "A/B: decode batch 1 and 4, and batch 64 and 256 with bf16 state, per binary"
    for rep in $(seq "${AB_REPS:-2}"); do
        for bin in "$BIN"/bench_model "$BIN"/var*/bench_model; do
            [ -x "$bin" ] || continue
            late && { echo "deadline: the rest of the A/B skipped"; break 2; }
            printf '%-28s ' "$bin"
            timeout 150 "$bin" "$CK" --backend gpu --prompt-len 64 --gen-len 128 --batch 1,4 2>&1 \
                | awk '($1 == 1 || $1 == 4) && NF == 6 { printf "batch %s: %s tok/s (%s of copy)  ", $1, $3, $5 }'
            [ "${AB_BATCHED:-1}" = 0 ] || timeout 200 "$bin" "$CK" --backend gpu --state-bf16 --prompt-len 64 --gen-len 64 --batch 64,256 2>&1 \
                | awk '($1 == 64 || $1 == 256) && NF == 6 { printf "batch %s bf16: %s tok/s  ", $1, $3 }'
            echo
        done
    done | tee "$OUT/ab.txt"
    for kb in "$BIN"/var*/bench_gpu_kernels; do # the GEMVs alone, where a variant brought its kernel benchmark
        [ -x "$kb" ] || continue
        echo "$kb"
        timeout 120 "$kb" 2>&1 | grep -E "^(in_proj|out_proj|lm_head) "
    done | tee -a "$OUT/ab.txt"
fi
if has prefillab; then
    # A/B of prefill: every bench_model in $BIN and $BIN/var*/, under each environment setting of
    # PREFILL_ENVS (space-separated settings, each VAR=VALUE[,VAR=VALUE...] or "-" for none; default "-"), at each of
    # PREFILL_LENS (default "512 4096") tokens, PREFILL_REPS rounds (default 3), the order of the
    # (binary, setting) pairs reversed every other round; the machines lent differ by a few per cent,
    # so only rounds of one call compare
    log "A/B: prefill per binary and setting (prefill_ab.txt)"
    for rep in $(seq "${PREFILL_REPS:-3}"); do
        mapfile -t runs < <(ab_runs "${PREFILL_ENVS:--}" "$rep")
        for run in "${runs[@]}"; do
            read -r bin label <<< "$run"
            envset=$(ab_env "$label")
            for T in ${PREFILL_LENS:-512 4096}; do
                late && { echo "deadline: the rest of the A/B skipped"; break 3; }
                printf '%-28s %-30s ' "$bin" "${envset:--}"
                env $envset timeout 150 "$bin" "$CK" --backend gpu --prompt-len "$T" --gen-len 1 --batch 1 2>&1 | grep -E "^prefill [0-9]"
            done
        done
    done | tee "$OUT/prefill_ab.txt"
fi
if has q8stream; then
    # decode of QS_BATCHES sequences (default 1,4) through gemv.cuh's GEMV ("blocks"), the backend's
    # choice ("default"), the streamed one (gemv_stream.cu) from one sequence at the shared-memory
    # budgets of QS_CONFIGS entries "KB x blocks per SM", and the backend with QS_CONFIGS entries
    # "VAR=VALUE" in its environment, for the weights of QS_WEIGHTS (default stored q8), by each
    # mamba2 of QS_BINS (default $BIN/mamba2), alternated QS_REPS times (default 2); then the GEMVs
    # alone (bench_gpu_kernels --gemv). QS_BASE replaces the first two ("blocks default").
    log "decode: the streamed GEMV against gemv.cuh's, bf16 and q8 (q8stream.txt)"
    for rep in $(seq "${QS_REPS:-2}"); do
        for bin in ${QS_BINS:-$BIN/mamba2}; do
            for w in ${QS_WEIGHTS:-stored q8}; do
                for cfg in ${QS_BASE-blocks default} ${QS_CONFIGS:-100x2}; do
                    case $cfg in
                    blocks) envs=(MAMBA2_GPU_GEMV=blocks) ;;
                    default) envs=(MAMBA2_GPU_GEMV=) ;;
                    *=*) envs=("$cfg") ;;
                    *) envs=(MAMBA2_GPU_GEMV=stream MAMBA2_GPU_STREAM_KB=${cfg%x*} MAMBA2_GPU_STREAM_BLOCKS=${cfg#*x}) ;;
                    esac
                    printf '%-16s %-6s %-8s ' "${bin#$BIN/}" "$w" "$cfg"
                    env "${envs[@]}" timeout 150 "$bin" bench "$CK" --backend gpu --weights $w --prompt-len 64 \
                        --gen-len 128 --batch ${QS_BATCHES:-1,4} 2>&1 | awk '$1 ~ /^[0-9]+$/ && $3 == "[" { printf "batch %s: %s tok/s  ", $1, $7 }
                                                              /rror/ { print }'
                    echo
                done
            done
        done
    done | tee "$OUT/q8stream.txt"
    timeout 150 "$BIN/bench_gpu_kernels" --gemv 2>&1 | grep -vE "^(chunked|  cumsum)" | tee -a "$OUT/q8stream.txt"
fi
if has ncuq8; then
    # the q8 decode GEMVs of one sequence in the model under Nsight Compute (kernels serialised, so
    # without the overlap of dependent launches), for $BIN/mamba2 as it is and with each entry of
    # NCUQ8_ENVS in its environment (default: the SSD step's rounding of y off), first 6 GEMV launches
    log "Nsight Compute: q8 GEMVs of one sequence in the model (ncu_gemv.txt)"
    for cfg in default ${NCUQ8_ENVS:-MAMBA2_GPU_Q8_ROUND_Y=0}; do
        echo "## $cfg" | tee -a "$OUT/ncu_gemv.txt"
        env $([ "$cfg" = default ] || echo "$cfg") timeout 150 ncu --clock-control none --section SpeedOfLight --section LaunchStats \
            --section Occupancy -k regex:gemv_kernel -c 6 "$BIN/mamba2" bench "$CK" --backend gpu --weights q8 --prompt-len 16 \
            --gen-len 2 --batch 1 > /tmp/ncu_q8.txt 2>&1
        echo "exit $?"
        grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Block Limit Registers" /tmp/ncu_q8.txt \
            | tee -a "$OUT/ncu_gemv.txt"
    done
fi
if has skinny; then
    # The few-token q8 GEMM (gemm_q8_skinny.cu): alone at T = 8..128 with MAMBA2_GPU_Q8_SKINNY=0 (off:
    # the tiled kernel, as before), 2 (on, 4-byte atomics only) and 1 (on); then the 7B, decode batch 1/4/16/64 after a 512-token
    # prompt: stored bf16, q8 without it, q8 with it, in SKINNY_REPS rounds (default 2), each run
    # started only while SKINNY_BUDGET seconds (default 330) from the step's start are not spent.
    t0=$(date +%s)
    log "few-token q8 GEMM alone, off, on without 16-byte reductions, on (skinny.txt)"
    for v in 0 2 1; do
        echo "## MAMBA2_GPU_Q8_SKINNY=$v"
        MAMBA2_GPU_Q8_SKINNY=$v timeout 100 "$BIN/bench_gpu_kernels" --q8gemm 128 2>&1
    done > "$OUT/skinny.txt"
    cat "$OUT/skinny.txt"
    log "7B: stored bf16, q8 (skinny off), q8 (skinny on), prompt 512, decode batch 1,4,16,64 (skinny.txt)"
    for rep in $(seq "${SKINNY_REPS:-2}"); do
        for cfg in "stored:1" "q8:0" "q8:1"; do
            [ $(( $(date +%s) - t0 )) -lt "${SKINNY_BUDGET:-330}" ] || break 2
            w=${cfg%%:*} v=${cfg#*:}
            echo "## round $rep weights $w MAMBA2_GPU_Q8_SKINNY=$v ($(date -u +%H:%M:%S))"
            MAMBA2_GPU_Q8_SKINNY=$v timeout 100 "$BIN/mamba2" bench "$CK" --backend gpu --weights "$w" --prompt-len 512 \
                --gen-len 32 --batch 1,4,16,64 2>&1 | grep -E "^prefill|^ +[0-9]+ +[0-9.]+ +\[|rror|ceiling"
        done
    done | tee -a "$OUT/skinny.txt"
fi
if has q8gemm; then
    # The q8 GEMM (gemm_q8.cu): alone against cuBLAS, then the 7B with stored (bf16) and q8 weights
    # alternated (Q8_REPS rounds, default 2), then q8 through the old path (MAMBA2_GPU_Q8_GEMM=0: every
    # matrix dequantized before cuBLAS) and with the q8 GEMM for every prefill (MAX_T=8192)
    log "q8 GEMM alone against cuBLAS on bf16 weights and against dequantization + cuBLAS (q8gemm.txt)"
    timeout 200 "$BIN/bench_gpu_kernels" --q8gemm 2>&1 | tee "$OUT/q8gemm.txt"
    log "7B: stored bf16 against q8, prefill 4096 + decode batch 1,4,16,64, prefill 512 (q8bench.txt)"
    q8b() { # label, env, bench arguments
        local label=$1 env=$2; shift 2
        echo "## $label $*"
        env $env timeout 150 "$BIN/mamba2" bench "$CK" --backend gpu "$@" 2>&1 | grep -E "^prefill|^ +[0-9]+ +[0-9.]+ +\[|rror"
    }
    for rep in $(seq "${Q8_REPS:-2}"); do
        for w in stored q8; do
            q8b "$w" "" --weights $w --prompt-len 4096 --gen-len 32 --batch 1,4,16,64
            q8b "$w" "" --weights $w --prompt-len 512 --gen-len 1 --batch 1
        done
    done > "$OUT/q8bench.txt"
    q8b q8-dequant MAMBA2_GPU_Q8_GEMM=0 --weights q8 --prompt-len 4096 --gen-len 32 --batch 16,64 >> "$OUT/q8bench.txt"
    q8b q8-dequant MAMBA2_GPU_Q8_GEMM=0 --weights q8 --prompt-len 512 --gen-len 1 --batch 1 >> "$OUT/q8bench.txt"
    q8b q8-gemm-all MAMBA2_GPU_Q8_GEMM_MAX_T=8192 --weights q8 --prompt-len 4096 --gen-len 1 --batch 1 >> "$OUT/q8bench.txt"
    q8b q8-gemm-all MAMBA2_GPU_Q8_GEMM_MAX_T=8192 --weights q8 --prompt-len 512 --gen-len 1 --batch 1 >> "$OUT/q8bench.txt"
    cat "$OUT/q8bench.txt"
    echo; echo "tok/s per configuration (rounds separated by /): prefill 4096, prefill 512, decode batch 1, 4, 16, 64"
    awk '/^## / { key = $2; decode = $0 !~ /--gen-len 1 /; next }
         /^prefill/ { n = $2; for (i = 1; i <= NF; i++) if ($i == "tok/s,") { t = $(i - 1); sub(/,$/, "", t) }
                      w[key, "p" n] = w[key, "p" n] (w[key, "p" n] == "" ? "" : " / ") t; keys[key] = 1 }
         decode && /^ +[0-9]+ +[0-9.]+ +\[/ { for (i = 1; i <= NF; i++) if ($i ~ /\]$/) { t = $(i + 1); break }
                      w[key, "b" $1] = w[key, "b" $1] (w[key, "b" $1] == "" ? "" : " / ") t; keys[key] = 1 }
         END { printf "%-13s | %-19s | %-19s | %-17s | %-17s | %-17s | %-17s\n", "weights", "prefill 4096", "prefill 512", "batch 1", "batch 4", "batch 16", "batch 64";
               for (k in keys) printf "%-13s | %-19s | %-19s | %-17s | %-17s | %-17s | %-17s\n", k, w[k, "p4096"], w[k, "p512"], w[k, "b1"], w[k, "b4"], w[k, "b16"], w[k, "b64"] }' \
        "$OUT/q8bench.txt" | tee "$OUT/q8table.txt"
fi
if has llamacuda; then
    # llama.cpp CUDA beside this engine on the same 64-layer checkpoint: its BF16 GGUF (bench/
    # llama_cpp_gguf.py) and a Q8_0 made by llama-quantize against our stored bf16 and --weights q8,
    # decode of one sequence (llama-bench tg128: 128 tokens after an empty context; ours: 128 steps after
    # a 512-token prompt, the same cost per step) and prefill of 512 and 4,096 tokens, LLAMA_REPS
    # alternated rounds (default 2). LLAMA=DIR holds llama.cpp's CUDA build (bin/: executables and libraries), LLAMA_SRC
    # its source (for gguf-py).
    LLAMA=${LLAMA:-/tmp/llama-cuda} LLAMA_SRC=${LLAMA_SRC:-/tmp/llama-src/llama.cpp}
    export LD_LIBRARY_PATH=$LLAMA/bin:$LD_LIBRARY_PATH:$LLAMA/nccl-stub # the stand-in libnccl.so.2 only where the machine has none
    log "llama.cpp CUDA: GGUFs of the 64-layer checkpoint (BF16, then Q8_0)"
    [ -f /tmp/ck64-BF16.gguf ] || PYTHONPATH=$LLAMA_SRC/gguf-py python3 bench/llama_cpp_gguf.py "$CK" \
        data/mistral-v3/tokenizer.model.v3 /tmp/ck64-BF16.gguf > /dev/null
    [ -f /tmp/ck64-Q8_0.gguf ] || "$LLAMA/bin/llama-quantize" --pure --token-embedding-type bf16 /tmp/ck64-BF16.gguf \
        /tmp/ck64-Q8_0.gguf Q8_0 16 > /tmp/quantize.log 2>&1 || tail -5 /tmp/quantize.log
    ls -la /tmp/ck64-*.gguf
    for rep in $(seq "${LLAMA_REPS:-2}"); do
        for f in BF16 Q8_0; do
            echo "## round $rep llama.cpp $f ($(date -u +%H:%M:%S))"
            timeout 150 "$LLAMA/bin/llama-bench" -m /tmp/ck64-$f.gguf -ngl 99 -p 512,4096 -n 128 -r 2 2>&1 | grep -E "^\| mamba2|error"
        done
        for w in stored q8; do
            echo "## round $rep ours $w ($(date -u +%H:%M:%S))"
            for pl in 512 4096; do
                timeout 100 "$BIN/mamba2" bench "$CK" --backend gpu --weights "$w" --prompt-len $pl \
                    --gen-len $([ $pl = 512 ] && echo 128 || echo 1) --batch 1 2>&1 | grep -E "^prefill|^ +1 +[0-9.]+ +\[|rror"
            done
        done
    done | tee "$OUT/llamacuda.txt"
fi
if has hf; then
    log "Hugging Face transformers on the same checkpoint"
    timeout 400 python3 bench/hf_mamba2.py "$CK" --prompt-len 2048 2>&1 | tee "$OUT/hf.txt" | tail -15
fi
late && echo "past DEADLINE_S=$DEADLINE_S: the steps after that point were skipped"
log done
