#!/usr/bin/env bash
# Reproduce results/cpu.md: the CPU backend on random-weight checkpoints with the exact 7B shapes.
#
#   bash bench/cpu_bench.sh [--layers 8] [--dir /tmp/ck8] [--fresh-cache] [-- extra mamba2 bench options]
#
# Writes the checkpoint with data/write_checkpoint.py when DIR has none, then runs
#   ./mamba2 bench DIR --backend cpu --roofline --prompt-len 512 --gen-len 16 --batch 1,2,4,8 --reps 5
# (for more than 8 layers: decode only, batch 1). --fresh-cache first drops the checkpoint's pages
# from the page cache (posix_fadvise DONTNEED after sync), so that the backend, which asks for
# 2 MiB pages on its weight mappings (madvise MADV_HUGEPAGE), reads them back as 2 MiB folios;
# without it the pages keep whatever size the writer left them in (see results/cpu.md for both).
# Measure on an otherwise idle machine: decode is bound by memory bandwidth, prefill by the cores.
set -euo pipefail
cd "$(dirname "$0")/.."

layers=8 dir="" fresh=0
while [ $# -gt 0 ]; do
    case "$1" in
    --layers) layers=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --fresh-cache) fresh=1; shift ;;
    --) shift; break ;;
    *) echo "unknown option $1 (see the top of $0)" >&2; exit 2 ;;
    esac
done
dir=${dir:-/tmp/ck$layers}

[ -x ./mamba2 ] || make -j2 mamba2
if [ ! -f "$dir/config.json" ]; then
    python3 data/write_checkpoint.py --out "$dir" --layers "$layers"
fi
if [ "$fresh" = 1 ]; then
    sync
    python3 - "$dir" <<'EOF'
import glob, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    print("dropped from the page cache:", path)
EOF
fi

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
if [ "$layers" -le 8 ]; then
    ./mamba2 bench "$dir" --backend cpu --roofline --prompt-len 512 --gen-len 16 --batch 1,2,4,8 --reps 5 "$@"
else
    ./mamba2 bench "$dir" --backend cpu --roofline --no-prefill --gen-len 8 --batch 1 --reps 3 "$@"
fi
