#!/bin/bash
# Ready, never run (2026-12-08: no device came; the lending was then paused for the session).
# To run it: `make -j2 device`, then `mkdir -p build-carry && cd .device && tar cJf ../build-carry/s68.tar.xz
# mamba2 run_tests bench_model bench_gpu_kernels`, copy this file to build-carry/s68.sh and call the
# device tool with `bash build-carry/s68.sh`, carry ["build-carry"], timeout 600 (about 560 s used).
# The H100 branch's CPU check also needs build-carry/old_cpu_mamba2.tar.xz (mamba2 of 12fbb41, the
# q8 trial before 4905dc9, built by `make device`); without it that branch fails to unpack and says so.
# Session 68, call A (any GPU): the prefill's state walk in two blocks of 64 state columns a head
# (MAMBA2_GPU_WALK_COLS=64) against one of 128 (main), and the prefill conv in runs of 16 / 8 tokens a
# thread (MAMBA2_GPU_CONV_RUN) against 32: the SSD test (both widths, the same bits), the shapes'
# test (the same logits and states), the chunked SSD alone alternated, prefill 512 / 4096 alternated;
# the gated norm as one warp a group (MAMBA2_GPU_NORM_WARPS=1): its test against double, prefill; the
# conv state saved on the side stream (MAMBA2_GPU_CONV_STATE_SIDE=1), in the shapes' test and prefill;
# the group scan sliced for one block a multiprocessor (MAMBA2_GPU_SCAN_WAVES=1): SSD test, alone, prefill.
# Then on an H200 main's record (results/gpu_record_next_call_2026-12-07b.sh on this build); on an
# H100 the CPU check of the joint q8 trial on the host's Xeon (results/cpu_joint_trial_xeon_next_call_2026-12-07.sh,
# the old trial from old_cpu_mamba2.tar.xz).
set -u
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s); el() { echo "$(( $(date +%s) - T0 )) s"; }
late() { (( $(date +%s) - T0 > ${1:-540} )); }
B=/tmp/b; mkdir -p $B && tar xJf build-carry/s68.tar.xz -C $B
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee $OUT/gpu.txt
H200=$(grep -c H200 $OUT/gpu.txt)
(python3 data/write_checkpoint.py --out /tmp/ck64 --layers 64 --threads 16 >/tmp/ck.log 2>&1; echo "checkpoint rc=$? ($(el))") &
CK=$!
echo "== SSD test, both walk widths ($(el))"
timeout 120 $B/run_tests gpu "SSD chunked kernels vs reference" > $OUT/ssd_test.log 2>&1; echo "exit $?"
grep -E "FAILED|^ +(tests|asserts)|SSD T=" $OUT/ssd_test.log | head -12
echo "== chunked SSD alone, walk 128 / 64 x scan waves 2 / 1 ($(el))"
timeout 120 $B/bench_gpu_kernels --walk 3 2>&1 | tee $OUT/walk.txt
wait $CK
echo "== the prefill-shape test ($(el))"
timeout 60 $B/run_tests gpu "prefill with the walk, conv and conv state in other shapes equals the default" > $OUT/shape_test.log 2>&1; echo "exit $?"
grep -E "FAILED|^ +(tests|asserts)|prefill T=" $OUT/shape_test.log | head -8
echo "== gated norm test, one warp / one block a group ($(el))"
timeout 60 $B/run_tests gpu "gated norm, one warp or one block a group, vs double" > $OUT/norm_test.log 2>&1; echo "exit $?"
grep -E "FAILED|^ +(tests|asserts)|gated norm" $OUT/norm_test.log | head -6
echo "== prefill: walk 128 / 64, conv runs 32 / 16, gated norm block / warp, conv state main / side, alternated ($(el))"
STOP=$([ "$H200" -gt 0 ] && echo 330 || echo 540)
for r in 1 2; do for v in "512 128 32 0 0 2" "512 64 32 0 0 2" "512 128 32 0 0 1" "512 128 16 0 0 2" "512 128 32 1 0 2" "512 128 32 0 1 2" "512 64 16 1 1 1" "4096 128 32 0 0 2" "4096 64 32 0 0 2" "4096 128 32 0 0 1" "4096 64 32 1 1 1"; do
  read -r T w c n sd sw <<< "$v"
  late $STOP && break 2
  printf 'T=%4s walk %3s scan waves %s conv run %2s norm warps %s conv state side %s r%s: ' $T $w $sw $c $n $sd $r
  MAMBA2_GPU_WALK_COLS=$w MAMBA2_GPU_SCAN_WAVES=$sw MAMBA2_GPU_CONV_RUN=$c MAMBA2_GPU_NORM_WARPS=$n MAMBA2_GPU_CONV_STATE_SIDE=$sd \
    timeout 60 $B/mamba2 bench /tmp/ck64 --backend gpu --prompt-len $T --gen-len 1 --reps 3 2>&1 | grep -E "^prefill" | head -1
done; done | tee $OUT/walk_prefill.txt
if [ "$H200" -gt 0 ]; then
  echo "== H200: main's record (results/gpu_record_next_call_2026-12-07b.sh on this build) ($(el))"
  TARBALL=build-carry/s68.tar.xz DL=$(( 560 - ($(date +%s) - T0) )) bash results/gpu_record_next_call_2026-12-07b.sh
else
  echo "== not an H200: the CPU check of the joint q8 trial (results/cpu_joint_trial_xeon_next_call_2026-12-07.sh) ($(el))"
  NEW_TAR=build-carry/s68.tar.xz OLD_TAR=build-carry/old_cpu_mamba2.tar.xz DL=$(( 560 - ($(date +%s) - T0) )) \
    bash results/cpu_joint_trial_xeon_next_call_2026-12-07.sh
fi
echo "== summary of the shapes ($(el))"
cat $OUT/gpu.txt; grep -E "^ +(tests|asserts)" $OUT/ssd_test.log $OUT/shape_test.log $OUT/norm_test.log; cat $OUT/walk.txt $OUT/walk_prefill.txt
