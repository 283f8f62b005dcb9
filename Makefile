# Mamba-2 (SSD) in C: the reference (ref/), the CPU path (cpu/) and the GPU path (gpu/).
#
#   make deps demo  install the build dependencies (Debian), build, generate with the model in data/
#   make            build ./mamba2 (ref + cpu, + gpu when nvcc is found)
#   make test       build and run the CUnit suites (GPU suites report themselves skipped without a GPU)
#   make docs       API documentation and guides (Doxygen), warnings are errors
#
# Variables: CC, OPT, SANITIZE=1 (ASan + UBSan), GPU=0 (leave out the CUDA code even when nvcc exists),
#            CPU=0 (leave out the CPU path), BUILD=dir and PROGRAM=path (where objects and the program go),
#            STATIC_DEPS=1 (link json-c, OpenBLAS, CUnit and OpenMP statically: for machines without them),
#            CUDA_ARCH (default sm_90a, the H100).

CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -Wno-format-truncation -Iref
BUILD   ?= build
PROGRAM ?= mamba2

ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
  BUILD   = build-sanitize
endif

REF_SRC  := $(filter-out ref/main.c,$(wildcard ref/*.c))
CPU_SRC  := $(if $(filter 0,$(CPU)),,$(wildcard cpu/*.c))
GPU_SRC  := $(wildcard gpu/*.cu)
TEST_SRC := $(wildcard tests/*.c)

# ---- the CPU path: OpenMP + OpenBLAS
ifneq ($(CPU_SRC),)
  CFLAGS    += -DMAMBA2_HAVE_CPU
  CPU_FLAGS := -fopenmp -Icpu
  DEP_LIBS  += -lopenblas
  LDFLAGS   += -fopenmp
endif

# ---- the GPU path: CUDA + cuBLAS, compiled whenever nvcc exists (CI compiles it without a GPU)
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_ARCH ?= sm_90a
ifneq ($(GPU),0)
ifneq ($(and $(GPU_SRC),$(NVCC)),)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  CFLAGS    += -DMAMBA2_HAVE_GPU -Igpu
  NVCCFLAGS ?= -O3 -std=c++17 -arch=$(CUDA_ARCH) -lineinfo -Xcompiler -Wall,-Wno-unused-parameter -Iref -Igpu
  GPU_OBJ   := $(GPU_SRC:%.cu=$(BUILD)/%.o)
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart_static -ldl -lrt -lpthread -lstdc++
endif
endif

ifeq ($(STATIC_DEPS),1)
  LINK_DEPS = -Wl,-Bstatic -ljson-c $(DEP_LIBS) $(if $(CPU_SRC),-lgomp -lgfortran -lquadmath) -Wl,-Bdynamic -lm -lpthread -ldl
  CUNIT     = -Wl,-Bstatic -lcunit -Wl,-Bdynamic
else
  LINK_DEPS = -ljson-c $(DEP_LIBS) -lm
  CUNIT     = -lcunit
endif

REF_OBJ  := $(REF_SRC:%.c=$(BUILD)/%.o)
CPU_OBJ  := $(CPU_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libmamba2.a
HEADERS  := $(wildcard ref/*.h cpu/*.h gpu/*.h)

.PHONY: all test test-gpu clean docs deps demo device
all: $(PROGRAM)

$(BUILD)/ref/%.o $(BUILD)/tests/%.o: CPU_FLAGS :=
$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPU_FLAGS) -c $< -o $@

$(BUILD)/gpu/%.o: gpu/%.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(REF_OBJ) $(CPU_OBJ) $(GPU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(PROGRAM): $(BUILD)/ref/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LINK_DEPS) $(CUDA_LIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUNIT) $(LINK_DEPS) $(CUDA_LIBS)

test: $(PROGRAM) $(BUILD)/run_tests
	./$(BUILD)/run_tests

# Benchmark of the GPU kernels alone (SSD, GEMV) at the 7B shapes, beside the measured ceilings.
$(BUILD)/bench_gpu_kernels: $(BUILD)/bench/gpu_kernels.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LINK_DEPS) $(CUDA_LIBS)

# Whole-model benchmark of any backend, beside the roofline.
$(BUILD)/bench_model: $(BUILD)/bench/model_bench.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LINK_DEPS) $(CUDA_LIBS)

$(BUILD)/bench/%.o: CFLAGS += -Igpu $(if $(CUDA_HOME),-I$(CUDA_HOME)/include)

# The GPU suite alone (on the GPU machine; without a GPU it reports itself inactive).
test-gpu: $(PROGRAM) $(BUILD)/run_tests
	./$(BUILD)/run_tests gpu

deps:
	bash .ci/install-deps

# The main job on the small model shipped in data/ (until the trained demo model lands:
# a random-weight fixture, greedy over token ids).
DEMO_MODEL ?= data/fixtures/g4_bf16_sharded
demo: $(PROGRAM)
	./mamba2 info $(DEMO_MODEL)
	./mamba2 generate $(DEMO_MODEL) --ids "1 17 42 99 7" -n 32

clean:
	rm -rf build build-sanitize build-device mamba2

# Binaries for the GPU machine (which lacks json-c, CUnit and OpenBLAS): GPU path only, static
# dependencies, stripped, in .device/ (ignored by git; carried by the device tool).
device:
	$(MAKE) BUILD=build-device PROGRAM=build-device/mamba2 CPU=0 STATIC_DEPS=1 build-device/mamba2 \
	    build-device/run_tests build-device/bench_gpu_kernels build-device/bench_model
	mkdir -p .device && cp build-device/mamba2 build-device/run_tests build-device/bench_gpu_kernels \
	    build-device/bench_model .device/ && strip .device/*
