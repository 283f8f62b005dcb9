#!/bin/bash
# Session 65, call C: the hand-off on by default to 32 sequences (try/next-norm, /tmp/b/var2) against
# main's defaults (/tmp/b): the GPU suite with the new default, then decode at 8..64 sequences.
set -u
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s)
el() { echo "$(( $(date +%s) - T0 )) s"; }
late() { (( $(date +%s) - T0 > ${DL:-300} )); }
B=/tmp/b; mkdir -p $B/var2 && tar xJf build-carry/nx2.tar.xz -C $B/var2
[ -x $B/bench_model ] || tar xJf build-carry/main.tar.xz -C $B
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
CKPID=
[ -f /tmp/ck64/model.safetensors.index.json ] || { python3 data/write_checkpoint.py --out /tmp/ck64 --layers 64 --threads 16 > /tmp/ck.log 2>&1 & CKPID=$!; }
if [ "${FULL:-1}" = 1 ]; then timeout 200 $B/var2/run_tests gpu > $OUT/tests.log 2>&1; echo "var2 run_tests gpu rc $? ($(el))"
else timeout 100 $B/var2/run_tests gpu "batched step vs single steps, fp32 and bf16 state" > $OUT/tests.log 2>&1; echo "var2 batched test rc $? ($(el))"; fi
grep -E "^ +(suites|tests|asserts)|FAILED|batched vs single" $OUT/tests.log | head -30
grep -E "^ +[0-9]+\. " $OUT/tests.log | head -20
[ -n "$CKPID" ] && wait $CKPID; echo "checkpoint ready ($(el))"
for r in 1 2; do
  runs="$B $B/var2"; (( r == 2 )) && runs="$B/var2 $B"
  for bin in $runs; do
    for st in bf16 fp32; do
      late && { echo "deadline"; break 3; }
      echo "## ${bin#/tmp/} $st round $r ($(el))" | tee -a $OUT/runs.txt
      timeout 90 $bin/bench_model /tmp/ck64 --backend gpu $([ $st = bf16 ] && echo --state-bf16) --prompt-len 64 --gen-len 32 --batch 8,16,32,64 2>&1 \
        | grep -E "ceilings|^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+% " | tee -a $OUT/runs.txt
    done
  done
done
echo "== end ($(el))"
