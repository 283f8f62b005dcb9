# Mamba-2 (SSD) in C: the reference (ref/), the CPU path (cpu/) and the GPU path (gpu/), with model
# loading (model/), the tokenizers (tokenizer/), the library's glue (src/) and the program (cli/).
#
#   make deps demo  install the build dependencies (Debian), build, generate with the model in data/
#   make            build ./mamba2 (ref + cpu, + gpu when nvcc is found)
#   make test       check the layout (tests/check_layout.py), build and run the CUnit suites (GPU suites
#                   report themselves skipped without a GPU)
#   make docs       API documentation and guides (Doxygen), warnings are errors
#   make lib        build/lib/: libmamba2.a and libmamba2.so (the public API, include/mamba2.h)
#   make install    the program, the libraries, the header and mamba2.pc (PREFIX, DESTDIR; make uninstall)
#   make install-check  build and run a program against an installed copy (static and shared)
#   make notebooks  execute the notebooks of notebooks-docs/ (after bash .ci/install-docs-deps)
#
# Variables: CC, OPT, SANITIZE=1 (ASan + UBSan), GPU=0 (leave out the CUDA code even when nvcc exists),
#            CPU=0 (leave out the CPU path), EDIT=0 (no libedit line editing in `mamba2 chat`), BUILD=dir and PROGRAM=path (where objects and the program go),
#            STATIC_DEPS=1 (link json-c, OpenBLAS, CUnit and OpenMP statically: for machines without them),
#            CUDA_ARCH (default sm_90a, the H100).

CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -Wno-format-truncation $(LIB_INC)
BUILD   ?= build
PROGRAM ?= mamba2

# SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer, on with ASan on Linux);
# any finding fails the run. The CUDA code (nvcc) is left out (GPU=0); the objects and the program go
# to build-sanitize/ (./mamba2 is left alone). The tests find the program through MAMBA2_PROGRAM.
ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all
  BUILD   = build-sanitize
  PROGRAM = build-sanitize/mamba2
  GPU     = 0
  # exitcode 66: a sanitizer finding in a child ./mamba2 must not pass for the expected "exit 1".
  SAN_ENV = ASAN_OPTIONS=exitcode=66:detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=66 \
            LSAN_OPTIONS=exitcode=66:suppressions=$(CURDIR)/tests/sanitize.supp:print_suppressions=0
endif

# The library's folders (headers are included by basename: one -I per folder) and the program's.
LIB_DIRS := ref model tokenizer src
LIB_INC  := $(LIB_DIRS:%=-I%) -Iinclude -Icli
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CLI_SRC  := $(filter-out cli/main.c,$(wildcard cli/*.c))
CPU_SRC  := $(if $(filter 0,$(CPU)),,$(wildcard cpu/*.c))
GPU_SRC  := $(wildcard gpu/*.cu)
TEST_SRC := $(wildcard tests/*.c) tests/fuzz/targets.c

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
  NVCCFLAGS ?= -O3 -std=c++17 -arch=$(CUDA_ARCH) -lineinfo -Xcompiler -Wall,-Wno-unused-parameter $(LIB_INC) -Igpu
  GPU_OBJ   := $(GPU_SRC:%.cu=$(BUILD)/%.o)
  CUDA_LIBS := -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart_static -ldl -lrt -lpthread -lstdc++
endif
endif

# ---- line editing for `mamba2 chat` on a terminal: libedit (Debian libedit-dev), when its header is
# there (EDIT=0 leaves it out; a static build, for machines without it, leaves it out too)
EDIT ?= $(if $(filter 1,$(STATIC_DEPS)),0,$(if $(wildcard /usr/include/editline/readline.h),1,0))
ifeq ($(EDIT),1)
  CLI_LIBS := -ledit
  $(BUILD)/cli/cmd_chat.o: CFLAGS += -DMAMBA2_HAVE_LIBEDIT
endif

ifeq ($(STATIC_DEPS),1)
  LINK_DEPS = -Wl,-Bstatic -ljson-c -lz $(DEP_LIBS) $(if $(CPU_SRC),-lgomp -lgfortran -lquadmath) -Wl,-Bdynamic -lm -lpthread -ldl
  # a shared object cannot hold the static libgomp (its thread-local data is initial-exec): the
  # shared library takes OpenMP from the system (after LINK_DEPS' -Bdynamic), the rest as the programs do
  SHLIB_DEPS = $(filter-out -lgomp,$(LINK_DEPS)) $(if $(CPU_SRC),-lgomp)
  CUNIT     = -Wl,-Bstatic -lcunit -Wl,-Bdynamic
else
  LINK_DEPS = -ljson-c -lz $(DEP_LIBS) -lm
  SHLIB_DEPS = $(LINK_DEPS)
  CUNIT     = -lcunit
endif

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
CPU_OBJ  := $(CPU_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libmamba2.a
HEADERS  := $(wildcard $(LIB_DIRS:%=%/*.h) cli/*.h cpu/*.h gpu/*.h gpu/*.cuh)

.PHONY: all test test-cpu-classes test-gpu clean docs deps demo device lib notebooks fuzz fuzz-ci
all: $(PROGRAM)

$(BUILD)/ref/%.o $(BUILD)/model/%.o $(BUILD)/tokenizer/%.o $(BUILD)/src/%.o $(BUILD)/cli/%.o $(BUILD)/tests/%.o: CPU_FLAGS :=
# the backend registry, the library's one way into cpu/ (tests/check_layout.py), in a CPU build
$(BUILD)/src/backend.o: CPU_FLAGS := $(if $(CPU_SRC),-Icpu)
$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CPU_FLAGS) -c $< -o $@
# the tests' own headers too (a struct of test_util.h changed under an object compiled before reads garbage)
$(TEST_OBJ): $(wildcard tests/*.h)

$(BUILD)/gpu/%.o: gpu/%.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ) $(CPU_OBJ) $(GPU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(PROGRAM): $(BUILD)/cli/main.o $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(CLI_LIBS) $(LINK_DEPS) $(CUDA_LIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(CUNIT) $(CLI_LIBS) $(LINK_DEPS) $(CUDA_LIBS)

test: $(PROGRAM) $(BUILD)/run_tests
	python3 tests/check_layout.py --self-test
	python3 tests/check_layout.py
	$(SAN_ENV) MAMBA2_PROGRAM=./$(PROGRAM) ./$(BUILD)/run_tests

# The CPU path under QEMU's models of older x86-64 CPUs (AVX2 Intel and AMD, AVX, SSE4.2): the
# kernels the dispatch picks there, checked against ref and against this machine's (qemu-user).
test-cpu-classes: $(PROGRAM) $(BUILD)/run_tests
	bash tests/cpu_classes.sh ./$(PROGRAM) ./$(BUILD)/run_tests

# Benchmark of the GPU kernels alone (SSD, GEMV) at the 7B shapes, beside the measured ceilings.
$(BUILD)/bench_gpu_kernels: $(BUILD)/bench/gpu_kernels.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LINK_DEPS) $(CUDA_LIBS)

# Whole-model benchmark of any backend, beside the roofline.
$(BUILD)/bench_model: $(BUILD)/bench/model_bench.o $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(CLI_LIBS) $(LINK_DEPS) $(CUDA_LIBS)

# AMX on this CPU: peak, the cost of tile loads, and the CPU path's AMX GEMM (CPU builds only).
$(BUILD)/bench_cpu_amx: $(BUILD)/bench/cpu_amx.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LINK_DEPS) $(CUDA_LIBS)

# The decode GEMV of a checkpoint against a plain read of the same bytes (CPU builds, AVX-512).
$(BUILD)/bench_cpu_gemv_stream: $(BUILD)/bench/cpu_gemv_stream.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LINK_DEPS) $(CUDA_LIBS)

$(BUILD)/bench/%.o: CFLAGS += -Igpu $(if $(CUDA_HOME),-I$(CUDA_HOME)/include)

# The GPU suite alone (on the GPU machine; without a GPU it reports itself inactive).
test-gpu: $(PROGRAM) $(BUILD)/run_tests
	./$(BUILD)/run_tests gpu

# ---- fuzzing (libFuzzer: clang + libclang-rt-14-dev): one harness per parser, tests/fuzz/fuzz_NAME.c.
#   make fuzz                      build build-fuzz/fuzz_NAME for every harness
#   make fuzz-ci                   run each for FUZZ_SECONDS (8) on its committed corpus, then replay
#                                  tests/fuzz/regressions/; new inputs go to build-fuzz/new/, not the corpus
#   build-fuzz/fuzz_NAME build-fuzz/new/NAME tests/fuzz/corpus/NAME    fuzz one parser for as long as you like
#   bash tests/fuzz/long_run.sh SECONDS WORKERS                          every harness at once, WORKERS processes each
# The library (ref/, model/, tokenizer/, src/) is rebuilt with coverage instrumentation, without the CPU / GPU paths.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 8
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS  := -g -O1 -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wno-unused-parameter \
                $(LIB_INC) -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build-fuzz/%.o)
# STATIC_DEPS=1: json-c and zlib linked in, for a machine without them (tests/fuzz/long_run.sh elsewhere)
ifeq ($(STATIC_DEPS),1)
  FUZZ_LIBS  := -Wl,-Bstatic -ljson-c -lz -Wl,-Bdynamic -lm
else
  FUZZ_LIBS  := -ljson-c -lz -lm
endif

$(FUZZ_LIB_OBJ) build-fuzz/tests/fuzz/targets.o: FUZZ_CFLAGS += -fsanitize=fuzzer-no-link
build-fuzz/%.o: %.c $(HEADERS) tests/fuzz/targets.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

build-fuzz/libmamba2.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/tests/fuzz/targets.o build-fuzz/libmamba2.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests/fuzz $^ -o $@ $(FUZZ_LIBS)

fuzz: $(FUZZ_NAMES:%=build-fuzz/fuzz_%)

fuzz-ci: fuzz
	bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

deps:
	bash .ci/install-deps

# The main job: Python-like code from the small Mamba-2 trained on the Python standard library
# (data/stdlib-mamba2, made by data/train_demo_model.py), sampled on the CPU path (the reference
# path when the CPU path is left out), tokens/s and peak memory on stderr. One thread: the model is
# small (5.7 M parameters), so more threads only add synchronisation, and a busy machine hurts them.
DEMO_MODEL   ?= data/stdlib-mamba2
DEMO_BACKEND ?= $(if $(CPU_SRC),cpu,ref)
DEMO_PROMPT  ?= def fibonacci(n):\n\040\040\040\040
demo: $(PROGRAM)
	./mamba2 info $(DEMO_MODEL)
	./mamba2 generate $(DEMO_MODEL) -p "$$(printf '$(DEMO_PROMPT)')" -n 200 --backend $(DEMO_BACKEND) \
	    --threads 1 --temperature 0.7 --top-k 40 --seed 1

clean:
	rm -rf build build-sanitize build-device build-fuzz mamba2 notebooks-docs/html

# ==== the library: public C API, libmamba2.a / libmamba2.so, install =================================
#
#   make lib        $(BUILD)/lib/: libmamba2.a, libmamba2.so.MAJOR.MINOR (SONAME libmamba2.so.MAJOR) and
#                   the links libmamba2.so.MAJOR, libmamba2.so; every backend this build has
#   make install    the program, both libraries, include/mamba2.h and mamba2.pc under PREFIX (/usr/local),
#                   with DESTDIR, BINDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR;  make uninstall removes them
#
# The API is include/mamba2.h, implemented by src/mamba2_*.c over the internal headers. Every object
# is compiled once, position-independent and with hidden visibility: the program, the tests and the
# benchmarks link them through $(LIB), internal functions included; the public libraries export only
# what include/mamba2.h marks MAMBA2_API (the api_library suite checks both with nm), and leave the
# command-line program's objects out. Static dependencies linked into the .so (cudart_static) stay hidden.
CFLAGS    += -fPIC -fvisibility=hidden
# (-fno-gnu-unique: libstdc++'s inline variables become weak symbols that can be made local, not
# "unique" ones that no tool can hide)
NVCCFLAGS += -Xcompiler -fPIC,-fvisibility=hidden,-fno-gnu-unique
API_SRC   := $(wildcard src/mamba2_*.c)
API_OBJ   := $(API_SRC:%.c=$(BUILD)/%.o)
PUB_OBJ   := $(LIB_OBJ) $(CPU_OBJ) $(GPU_OBJ)
API_MAJOR := $(shell awk '/define MAMBA2_VERSION_MAJOR/ {print $$3}' include/mamba2.h)
API_MINOR := $(shell awk '/define MAMBA2_VERSION_MINOR/ {print $$3}' include/mamba2.h)
API_PATCH := $(shell awk '/define MAMBA2_VERSION_PATCH/ {print $$3}' include/mamba2.h)
SONAME    := libmamba2.so.$(API_MAJOR)
SHLIB     := $(BUILD)/lib/$(SONAME).$(API_MINOR)
STLIB     := $(BUILD)/lib/libmamba2.a
# what a static link of libmamba2.a needs besides it (mamba2.pc's Libs.private)
LIBS_PRIVATE := $(if $(CPU_SRC),-lgomp) $(LINK_DEPS) $(CUDA_LIBS)

.PHONY: install uninstall install-check
all: lib
lib: $(SHLIB) $(STLIB)
$(API_OBJ) $(BUILD)/tests/test_api.o: include/mamba2.h src/mamba2_impl.h
# the api_library suite reads the libraries beside it; the header is checked on its own first
$(BUILD)/run_tests: | $(SHLIB) $(STLIB) $(BUILD)/header-check.stamp

# Everything the public libraries hold as one relocatable object in which only the API stays global:
# --localize-hidden for the internal functions (some of them also start with mamba2_), and the
# keep-global list for what the compiler makes visible whatever -fvisibility says (gcc 12 gives the
# resolvers of target_clones default visibility). A program linking libmamba2.a then sees nothing of
# ours but mamba2_* (no clash with its own utf8_decode or bpe_merge), and the .so exports the same.
$(BUILD)/lib/mamba2.o: $(PUB_OBJ)
	@mkdir -p $(dir $@)
	$(LD) -r $^ -o $@
	objcopy --localize-hidden --wildcard --keep-global-symbol='mamba2_*' $@

$(SHLIB): $(BUILD)/lib/mamba2.o
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--exclude-libs,ALL -Wl,--no-undefined $(LDFLAGS) $< -o $@ \
	    $(SHLIB_DEPS) $(CUDA_LIBS)
	ln -sf $(notdir $@) $(BUILD)/lib/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/lib/libmamba2.so

$(STLIB): $(BUILD)/lib/mamba2.o
	@rm -f $@
	ar rcs $@ $<

# The public header compiles on its own as C99 and as C++11, without a warning.
$(BUILD)/header-check.stamp: include/mamba2.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -x c include/mamba2.h
	$(CXX) -std=c++11 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only -x c++ include/mamba2.h
	touch $@

PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# mamba2.pc, one line per printf argument; paths under PREFIX are written relative to ${prefix}
PC_LINES = 'prefix=$(PREFIX)' 'libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))' \
           'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))' '' 'Name: mamba2' \
           'Description: Mamba-2 (SSD) language models in C: reference, CPU and GPU paths' \
           'Version: $(API_MAJOR).$(API_MINOR).$(API_PATCH)' 'Cflags: -I$${includedir}' \
           'Libs: -L$${libdir} -lmamba2' 'Libs.private: $(strip $(LIBS_PRIVATE))'

install: $(PROGRAM) lib
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 755 $(PROGRAM) $(DESTDIR)$(BINDIR)/mamba2
	install -m 644 $(STLIB) $(DESTDIR)$(LIBDIR)/libmamba2.a
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB))
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmamba2.so
	install -m 644 include/mamba2.h $(DESTDIR)$(INCLUDEDIR)/mamba2.h
	printf '%s\n' $(PC_LINES) > $(DESTDIR)$(PKGCONFIGDIR)/mamba2.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/mamba2 $(DESTDIR)$(LIBDIR)/libmamba2.a $(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB)) \
	    $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libmamba2.so $(DESTDIR)$(INCLUDEDIR)/mamba2.h \
	    $(DESTDIR)$(PKGCONFIGDIR)/mamba2.pc

# The installed library as a user meets it (CI runs it after make test): install into a temporary
# prefix, build tests/install/generate.c with pkg-config alone (static and shared), run both on the
# demo model; the README's excerpt of it; DESTDIR and uninstall.
install-check: $(PROGRAM) lib
	MAMBA2_EXPECT_GPU=$(if $(GPU_OBJ),1,0) bash tests/install/check.sh

# ==== end of the library block ==========================================================================

# API documentation and guides in notebooks-docs/html/ (Doxygen, notebooks-docs/Doxyfile), then a
# check that every public (header) type and function is documented. Any warning fails the target.
# The pages are complete offline: MathJax (Debian's libjs-mathjax) is copied in, the stored executed
# notebooks are rendered as pages (notebooks-docs/render_notebooks.py, Python packages of
# bash .ci/install-docs-deps), and every relative link of the guides and of the HTML must lead to a
# file that exists (notebooks-docs/check_links.py).
NOTEBOOKS    := $(sort $(wildcard notebooks-docs/*.ipynb))
DOCS_VENV    ?= build/venv-docs
DOCS_PYTHON  ?= $(if $(wildcard $(DOCS_VENV)/bin/python),$(DOCS_VENV)/bin/python,python3)
JUPYTER      ?= $(if $(wildcard $(DOCS_VENV)/bin/jupyter),$(DOCS_VENV)/bin/jupyter,jupyter)
MATHJAX      ?= /usr/share/javascript/mathjax
# the parts of MathJax 2 the pages load: TeX input; HTML-CSS output (Doxygen) and CommonHTML output
# (the notebooks), and their TeX web fonts
MATHJAX_PARTS = MathJax.js config/TeX-AMS_CHTML-full.js config/Safe.js extensions jax/element jax/input/TeX \
                jax/output/HTML-CSS/jax.js jax/output/HTML-CSS/config.js jax/output/HTML-CSS/autoload \
                jax/output/HTML-CSS/fonts/TeX jax/output/CommonHTML fonts/HTML-CSS/TeX/woff localization/en
docs:
	@# from scratch: pages of a guide or label renamed since the last build would stay behind, and the
	@# link check would read them
	rm -rf notebooks-docs/html
	( cat notebooks-docs/Doxyfile; echo "INPUT += $(wildcard results/*.md)" ) | doxygen -
	@mkdir -p $(BUILD)
	doxygen notebooks-docs/Doxyfile.public-api
	@# the guides' figures (Markdown images are linked, not copied, by Doxygen): each must exist
	@for f in $$(grep -oh '](figures/[^)]*)' notebooks-docs/*.md | sed 's/^](//; s/)$$//' | sort -u); do \
	    test -f notebooks-docs/$$f || { echo "docs: notebooks-docs/$$f is missing (make notebooks)"; exit 1; }; done
	mkdir -p notebooks-docs/html/figures && cp notebooks-docs/figures/*.png notebooks-docs/figures/*.svg notebooks-docs/html/figures/
	@test -f $(MATHJAX)/MathJax.js || { echo "docs: no MathJax in $(MATHJAX) (bash .ci/install-docs-deps)"; exit 1; }
	rm -rf notebooks-docs/html/mathjax && mkdir -p notebooks-docs/html/mathjax
	cd $(MATHJAX) && cp -RL --parents $(MATHJAX_PARTS) $(CURDIR)/notebooks-docs/html/mathjax/
	$(DOCS_PYTHON) notebooks-docs/render_notebooks.py $(NOTEBOOKS)
	python3 notebooks-docs/doxygen_filter.py --self-test
	python3 notebooks-docs/check_links.py --self-test
	python3 notebooks-docs/check_links.py --markdown README.md notebooks-docs/*.md $(NOTEBOOKS) --html notebooks-docs/html
	@echo "docs: notebooks-docs/html/index.html, 0 warnings, no broken links"

# Execute the notebooks of notebooks-docs/ in place (Python packages: bash .ci/install-docs-deps): the
# stored notebooks keep their outputs, figures included, so that they show where they are read (a
# code-hosting site, Jupyter, `make docs`); the figures they draw also go to notebooks-docs/figures/.
# Then every notebook must show its figures (notebooks-docs/check_notebooks.py). The mamba2 package
# they import (python/) uses the library just built.
notebooks: lib
	set -e; for nb in $(NOTEBOOKS); do \
	    MAMBA2_LIBRARY=$(CURDIR)/$(SHLIB) $(JUPYTER) nbconvert --to notebook --execute --inplace \
	        --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False $$nb; done
	python3 notebooks-docs/check_notebooks.py --self-test
	python3 notebooks-docs/check_notebooks.py $(NOTEBOOKS)

# Binaries for the GPU machine (which lacks json-c, CUnit and OpenBLAS): GPU path only, static
# dependencies, stripped, in .device/ (ignored by git; carried by the device tool).
device:
	$(MAKE) BUILD=build-device PROGRAM=build-device/mamba2 CPU=0 STATIC_DEPS=1 build-device/mamba2 \
	    build-device/run_tests build-device/bench_gpu_kernels build-device/bench_model
	mkdir -p .device && cp build-device/mamba2 build-device/run_tests build-device/bench_gpu_kernels \
	    build-device/bench_model .device/ && strip .device/mamba2 .device/run_tests .device/bench_gpu_kernels .device/bench_model
