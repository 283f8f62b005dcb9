#!/bin/bash
# Session 64, call A: out_proj's hand-off with the rewritten read-back (handoff-final, /tmp/b) and with
# its ticket taken by one thread with acquire-release (try/handoff-ticket, /tmp/b/var1) against the
# defaults; the GPU suite (with the one-helper decode GEMM tests of 77b96c6) and memcheck first.
set -u
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
B=/tmp/b; mkdir -p $B && tar xJf build-carry/hf.tar.xz -C $B && tar xJf build-carry/tk.tar.xz -C $B
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
python3 data/write_checkpoint.py --out /tmp/ck64 --layers 64 --threads 16 > /tmp/ck.log 2>&1 &
CKPID=$!
N=MAMBA2_GPU_GEMM_DECODE_NORMS=out+scale+next
T="decode GEMM handing the next norm its input"
timeout 200 $B/run_tests gpu > $OUT/tests.log 2>&1; echo "run_tests gpu rc $? ($(el))"
grep -E "^ +(suites|tests|asserts)|FAILED" $OUT/tests.log | head -20
timeout 60 $B/var1/run_tests gpu "$T" > $OUT/tests_var1.log 2>&1; echo "var1 hand-off test rc $?"; grep -E "^ +asserts|FAILED" $OUT/tests_var1.log
for bin in $B $B/var1; do
  echo "== memcheck $bin"; env $N timeout 90 compute-sanitizer --tool memcheck $bin/run_tests gpu "$T" 2>&1 | grep -E "ERROR SUMMARY|asserts"
done
wait $CKPID; echo "checkpoint ready ($(el))"
for r in 1 2; do
  runs="$B|- $B|$N $B/var1|$N"; (( r == 2 )) && runs="$B/var1|$N $B|$N $B|-"
  for run in $runs; do
    bin=${run%%|*}; s=${run#*|}
    for st in bf16 fp32; do
      (( $(date +%s) - T0 > ${DL:-280} )) && { echo "deadline"; break 3; }
      echo "## ${bin#/tmp/} $s $st round $r ($(el))" | tee -a $OUT/runs.txt
      env $([ "$s" = - ] || echo $s) timeout 90 $bin/bench_model /tmp/ck64 --backend gpu $([ $st = bf16 ] && echo --state-bf16) --prompt-len 64 --gen-len 32 --batch 16,32,64 2>&1 \
        | grep -E "ceilings|^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+% " | tee -a $OUT/runs.txt
    done
  done
done
echo "== end ($(el))"
