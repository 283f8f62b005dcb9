#!/bin/bash
# Session 66, call A (H200 wanted; never ran: no device came): main at 12fbb41 (out_proj's hand-off on by default to 32 sequences,
# normed_product() refactor) on a GPU for the first time: the GPU suite, compute-sanitizer on the
# hand-off and batched tests, then main's record (decode 1-128 both states, q8 vs bf16 at one
# sequence, prefill 512 / 4096 with the roofline, the kernels alone).
set -u
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s); el() { echo "$(( $(date +%s) - T0 )) s"; }
late() { (( $(date +%s) - T0 > ${DL:-420} )); }
B=/tmp/b; mkdir -p $B && tar xJf ${TARBALL:-build-carry/s66.tar.xz} -C $B # TARBALL: another build (2026-12-08)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
([ -s /tmp/ck64/model.safetensors ] && echo "checkpoint made before" || { python3 data/write_checkpoint.py --out /tmp/ck64 --layers 64 --threads 16 >/tmp/ck.log 2>&1; echo "checkpoint rc=$?"; }) &
CK=$!
DEC='^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+% |ceilings'
echo "== run_tests gpu ($(el))"
timeout 200 $B/run_tests gpu > $OUT/tests.log 2>&1; echo "exit $?"
timeout 60 $B/run_tests demo_model_gpu >> $OUT/tests.log 2>&1; echo "exit $?"
grep -E "random seed|FAILED|^ +(suites|tests|asserts)" $OUT/tests.log | head -24
grep -E "^ +[0-9]+\. " $OUT/tests.log | head -20
echo "== compute-sanitizer on the hand-off and batched tests ($(el))"
for tool in memcheck racecheck synccheck; do
  for t in "decode GEMM handing the next norm its input" "batched step vs single steps, fp32 and bf16 state"; do
    [ $tool != memcheck ] && [[ $t == batched* ]] && continue
    timeout 120 compute-sanitizer --tool $tool --print-limit 10 $B/run_tests gpu "$t" > /tmp/san.log 2>&1
    echo "$tool [$t] exit $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/san.log | tail -1) $(grep -E '^ +asserts' /tmp/san.log)"
  done
done | tee $OUT/sanitizer.txt
wait $CK
echo "== record: bench_model decode 1-128 ($(el))"
for sb in fp32 bf16; do
  echo "## main $sb"
  late || timeout 150 $B/bench_model /tmp/ck64 --backend gpu $([ $sb = bf16 ] && echo --state-bf16) --prompt-len 64 --gen-len 32 \
      --batch 1,2,4,8,16,32,64,128 2>&1 | grep -E "$DEC"
done | tee $OUT/record.txt
echo "== one sequence, bf16 vs q8 (mamba2 bench, prompt 512, 2 rounds) ($(el))"
for r in 1 2; do for w in stored q8; do
  late && break 2
  printf '%-7s round %d: ' $w $r
  timeout 100 $B/mamba2 bench /tmp/ck64 --backend gpu --weights $w --prompt-len 512 --gen-len 128 --batch 1 2>&1 \
      | awk '/^prefill/ { printf "prefill %s tok/s  ", $9 } $1 ~ /^[0-9]+$/ && $3 == "[" { printf "batch %s: %s tok/s", $1, $7 } END { print "" }'
done; done | tee $OUT/q8.txt
echo "== prefill 512 / 4096 (--reps 3 --roofline) ($(el))"
for T in 512 4096; do
  late || timeout 100 $B/mamba2 bench /tmp/ck64 --backend gpu --prompt-len $T --gen-len 1 --reps 3 --roofline 2>&1 | grep -E "^(prefill|ceilings)"
done | tee $OUT/prefill.txt
echo "== A/B: out_proj's hand-off off (MAMBA2_GPU_GEMM_DECODE_NORMS=out+scale) against the default, 8-32 sequences ($(el))"
for run in "MAMBA2_GPU_GEMM_DECODE_NORMS=out+scale bf16" "- bf16" "MAMBA2_GPU_GEMM_DECODE_NORMS=out+scale fp32" "- fp32"; do
  read -r e sb <<< "$run"
  late && break
  echo "## $e $sb"
  env $([ "$e" = - ] || echo "$e") timeout 100 $B/bench_model /tmp/ck64 --backend gpu $([ $sb = bf16 ] && echo --state-bf16) \
      --prompt-len 64 --gen-len 32 --batch 8,16,32 2>&1 | grep -E "$DEC"
done | tee $OUT/ab_handoff.txt
echo "== kernels alone ($(el))"
late || timeout 90 $B/bench_gpu_kernels > $OUT/kernels.txt 2>&1
echo "== summary ($(el))"
cat $OUT/gpu.txt
grep -E "^ +(tests|asserts)" $OUT/tests.log
cat $OUT/sanitizer.txt
awk '/^## / { k = $2 " " $3; next } /ceilings/ { print k ": " $0; next } { printf "%s b%s %s (%s)\n", k, $1, $3, $5 }' $OUT/record.txt
cat $OUT/q8.txt $OUT/prefill.txt
grep -iE "chunked|ssd" $OUT/kernels.txt | head -8
awk '/^## / { k = $2 " " $3; next } /ceilings/ { next } { printf "%s b%s %s (%s)\n", k, $1, $3, $5 }' $OUT/ab_handoff.txt
