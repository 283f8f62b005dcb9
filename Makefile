# Mamba-2 (SSD) in C: the reference (ref/), the CPU path (cpu/) and the GPU path (gpu/).
#
#   make            build ./mamba2
#   make test       build and run the CUnit suites
#   make demo       generate text with the small model in data/
#   make docs       API documentation (Doxygen)
#
# Variables: CC, CFLAGS, SANITIZE=1 (ASan + UBSan), GPU=0 (skip the CUDA code even when nvcc exists).

CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Iref
LDLIBS  += -ljson-c -lm
BUILD   := build

ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
endif

REF_SRC  := $(filter-out ref/main.c,$(wildcard ref/*.c))
REF_OBJ  := $(REF_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libmamba2.a

.PHONY: all test clean docs
all: mamba2

$(BUILD)/%.o: %.c $(wildcard ref/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(REF_OBJ)
	@rm -f $@
	ar rcs $@ $^

mamba2: $(BUILD)/ref/main.o $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/run_tests: $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $^ -o $@ -lcunit $(LDLIBS)

test: mamba2 $(BUILD)/run_tests
	./$(BUILD)/run_tests

clean:
	rm -rf $(BUILD) mamba2
