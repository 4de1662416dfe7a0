# Top-level build for the sandboxed Lua WebSocket host.
#
# Layers (see README.md): shm/ and sandbox/ are plain C with no Lua and no
# libwebsockets; lua/ is the worker-side runtime; worker/ is the worker
# executable; broker/ holds policy, the WebSocket protocol core and the event
# loop. Every directory's .c files are picked up by wildcard, so adding a file
# needs no Makefile change. A file that holds main() lives in */main.c or
# tests/tools/ or tests/bench/.

CC      ?= cc
BUILD   ?= build
PKGS    := libwebsockets lua5.4 libseccomp cunit zlib openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wpointer-arith -Wvla \
           -Wstrict-prototypes -Wno-unused-parameter
ifeq ($(WERROR),1)
WARN    += -Werror
endif
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  += -std=gnu11 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN) -I. $(PKG_CFLAGS) -pthread
LDFLAGS += $(SAN) -pthread
LDLIBS  += $(PKG_LIBS) -lm

SHM_SRC := $(wildcard shm/*.c)
SBX_SRC := $(wildcard sandbox/*.c)
RT_SRC  := $(wildcard lua/*.c)
BRK_SRC := $(filter-out broker/main.c,$(wildcard broker/*.c))
WRK_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c))
UNIT_SRC := $(wildcard tests/unit/*.c)
TOOLS   := $(patsubst tests/tools/%.c,$(BUILD)/%,$(wildcard tests/tools/*.c))
BENCHES := $(patsubst tests/bench/%.c,$(BUILD)/%,$(wildcard tests/bench/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
SHM_OBJ := $(call obj,$(SHM_SRC))
SBX_OBJ := $(call obj,$(SBX_SRC))
RT_OBJ  := $(call obj,$(RT_SRC))
BRK_OBJ := $(call obj,$(BRK_SRC))
WRK_OBJ := $(call obj,$(WRK_SRC))
LIB_OBJ := $(SHM_OBJ) $(SBX_OBJ) $(RT_OBJ) $(BRK_OBJ) $(WRK_OBJ)

.PHONY: all test check asan fuzz bench demo deps clean format unit integration
# Keep object files of tools and benches (no "rm ..." after the test output).
.SECONDARY:
all: $(BUILD)/broker $(BUILD)/worker $(BUILD)/unit_tests $(TOOLS) $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(BUILD) -MMD -MP -c $< -o $@

$(BUILD)/libhost.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/broker: $(call obj,broker/main.c) $(BUILD)/libhost.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The worker links Debian's static liblua5.4.a: calls into the interpreter
# skip the PLT and the interpreter is built without -fPIC (recv 16 B +6 %,
# tests/BENCHMARKS.md); it needs nothing else from the package list but
# libseccomp.
WORKER_LIBS := -Wl,-Bstatic -llua5.4 -Wl,-Bdynamic $(shell pkg-config --libs libseccomp 2>/dev/null) -lm

$(BUILD)/worker: $(call obj,worker/main.c) $(BUILD)/libhost.a
	$(CC) $(LDFLAGS) -o $@ $^ $(WORKER_LIBS)

# Unit tests: every tests/unit/test_NAME.c defines `int suite_NAME(void)`,
# which registers its CUnit suite; the list is generated from the file names.
$(BUILD)/suites.inc: $(UNIT_SRC)
	@mkdir -p $(BUILD)
	@printf '%s\n' $(foreach t,$(patsubst tests/unit/test_%.c,%,$(filter tests/unit/test_%.c,$(UNIT_SRC))),'SUITE($(t))') > $@.tmp
	@cmp -s $@.tmp $@ || mv $@.tmp $@; rm -f $@.tmp

$(call obj,tests/unit/main.c): $(BUILD)/suites.inc
$(BUILD)/unit_tests: $(call obj,$(UNIT_SRC)) $(BUILD)/libhost.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/libhost.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Measures the worker's Lua: linked like the worker.
$(BUILD)/bench_lua_floor: $(BUILD)/obj/tests/bench/bench_lua_floor.o $(BUILD)/libhost.a
	$(CC) $(LDFLAGS) -o $@ $^ $(WORKER_LIBS)

$(BUILD)/%: $(BUILD)/obj/tests/bench/%.o $(BUILD)/libhost.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The whole suite: CUnit units, Lua runtime scripts, integration through the
# real broker. The last line is the combined `N passed, N failed`.
test: all
	BUILD=$(BUILD) tests/run-all.sh

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

# Warnings as errors, formatting, and the layer include rules.
check:
	$(MAKE) WERROR=1 BUILD=build/check all
	tests/check-layers.sh
	tests/check-format.sh

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    BUILD=build/asan tests/run-all.sh
	BUILD=build/asan tests/faults/leaks.sh

fuzz:
	tests/fuzz/run.sh

bench: all
	BUILD=$(BUILD) tests/bench/run.sh

demo: all
	BUILD=$(BUILD) examples/run-demo.sh

deps:
	tests/install-deps.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
