#!/bin/bash
# Session 67, call B: the joint q8 load trial (4905dc9) on the GPU machine's host CPU (Intel Xeon,
# where line by line with the L2 prefetch was the fastest pair), against the build before it
# (6d1c15e: order first, then the prefetch), 8-layer q8 checkpoint, 2 and 8 threads, alternated.
# Never ran (2026-12-07: no device came). To run it: build-carry/s67.tar.xz = the device build of
# 6d1c15e (`git checkout 6d1c15e && make -j2 device && cd .device && tar cJf ../build-carry/s67.tar.xz
# mamba2 run_tests bench_model bench_gpu_kernels`), build-carry/s67b.tar.xz = the same of main
# (mamba2 run_tests); this file copied to build-carry/s67b.sh; then `DL=380 bash build-carry/s67b.sh`
# with carry ["build-carry"], any kind (a git worktree for the old build keeps main untouched).
set -u
export OUT=${OUT:-/tmp/out}; mkdir -p $OUT
T0=$(date +%s); el() { echo "$(( $(date +%s) - T0 )) s"; }
late() { (( $(date +%s) - T0 > ${DL:-400} )); }
N=/tmp/new; O=/tmp/old; mkdir -p $N $O
tar xJf ${NEW_TAR:-build-carry/s67b.tar.xz} -C $N && tar xJf ${OLD_TAR:-build-carry/s67.tar.xz} -C $O mamba2 # other builds: 2026-12-08
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|L2|L3"; grep -o -w "avx512f\|avx512_vnni\|avx512_bf16\|amx_tile\|avx_vnni" /proc/cpuinfo | sort | uniq -c; } | tee $OUT/cpu.txt
python3 data/write_checkpoint.py --out /tmp/ck8 --layers 8 --threads 16 > /tmp/ck.log 2>&1; echo "checkpoint rc=$? ($(el))"
echo "== run_tests cpu (new build) ($(el))"
timeout 240 $N/run_tests cpu > $OUT/tests_cpu.log 2>&1; echo "exit $?"
grep -E "random seed|FAILED|^ +(suites|tests|asserts)" $OUT/tests_cpu.log
grep -A9 "decode's reads timed" $OUT/tests_cpu.log | grep -E "q8," | head -4
echo "== q8 decode, old trial vs joint trial, alternated ($(el))"
for t in 2 8; do for r in 1 2 3; do for b in old new; do
  late && break 3
  B=$([ $b = old ] && echo $O || echo $N)
  printf '%s t=%s r%s: ' $b $t $r
  timeout 60 $B/mamba2 bench /tmp/ck8 --backend cpu -t $t --weights q8 --no-prefill --gen-len 16 --reps 3 --roofline 2>&1 \
    | awk '/^ceilings/ { r = $10; s = $0; sub(/.*decode products: [a-z0-9-]+;? ?/, "", s); sub(/\)$/, "", s) } $1 == 1 && NF >= 9 { printf "%s tok/s, %s of read (read %s GB/s); %s\n", $7, $9, r, s }'
done; done; done | tee $OUT/q8_trial.txt
echo "== summary ($(el))"
cat $OUT/cpu.txt; grep -E "^ +(tests|asserts)" $OUT/tests_cpu.log; cat $OUT/q8_trial.txt
