# The x86-64 classes that bench/llama_cpp_bench.sh and bench/device_cpu_compare.sh force both sides
# down to, defined once (sourced by both):
#
#   llama_cpp_isa ISA    sets LLAMA_ISA (llama.cpp's cmake switches) and OURS_ENV (our environment);
#                        returns 1 for a name it does not know.
#
#   native      both sides at the CPU's best
#   avx512bf16  AVX-512 + VNNI + AVX512_BF16, no AMX (Zen 4 / Zen 5, Cooper Lake; a Sapphire Rapids
#               or later Xeon with its AMX left out)
#   avx512vnni  AVX-512F/BW/DQ/VL + VNNI, no BF16, no AMX (Cascade Lake, Ice Lake)
#   avx512      the same without VNNI (Skylake-SP / -X)
#   avx2        AVX2 + FMA + F16C, no AVX-512, no VNNI (Haswell to Comet Lake, Zen 1-3)
#   avx2vnni    avx2 with our ymm vpdpbusd on, llama.cpp as for avx2 (for a CPU without AVX-VNNI,
#               where llama.cpp's AVX-VNNI build would not run): an upper bound for our side
#   avx2-vnni   AVX2 + AVX-VNNI on both sides (Intel client cores from Alder Lake; the CPU must have it)
llama_cpp_isa() {
    local off=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
        -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
    case $1 in
    native) LLAMA_ISA=(-DGGML_NATIVE=ON) OURS_ENV=() ;;
    avx512bf16)
        LLAMA_ISA=("${off[@]}" -DGGML_AVX512=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON)
        OURS_ENV=(MAMBA2_CPU_ISA=avx512bf16) ;; # AMX left out, each precision's own kernel kept
    avx512 | avx512vnni)
        LLAMA_ISA=("${off[@]}" -DGGML_AVX512=ON -DGGML_AVX_VNNI=OFF
            -DGGML_AVX512_VNNI=$([ "$1" = avx512vnni ] && echo ON || echo OFF))
        OURS_ENV=(MAMBA2_CPU_ISA=avx512 OPENBLAS_CORETYPE=SkylakeX)
        [ "$1" = avx512vnni ] || OURS_ENV+=(MAMBA2_CPU_VNNI=0) ;;
    avx2 | avx2vnni | avx2-vnni)
        LLAMA_ISA=("${off[@]}" -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF
            -DGGML_AVX_VNNI=$([ "$1" = avx2-vnni ] && echo ON || echo OFF))
        OURS_ENV=(MAMBA2_CPU_ISA=avx2 MAMBA2_CPU_GEMM=avx2 OPENBLAS_CORETYPE=Haswell)
        [ "$1" = avx2 ] && OURS_ENV+=(MAMBA2_CPU_VNNI=0) ;;
    *) return 1 ;;
    esac
    return 0
}
