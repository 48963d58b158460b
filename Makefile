# vslice - build, test, run, bench.
#   make deps    install every Debian package build, tests and run need (idempotent)
#   make         build/slicectl and build/libvslice.a
#   make test    unit tests (plain + ASan/UBSan), integration tests as root, short fuzz runs
#   make run     the main job: build the busybox image, run the example experiment
#   make bench   start latency and density benchmarks (tests/bench), results in docs/benchmarks.md

CC       ?= gcc
PREFIX   ?= /usr/local
BUILD    ?= build
DEPS_PKGS = build-essential pkg-config libseccomp-dev libcap-dev libjansson-dev libcmocka-dev \
            libarchive-dev nettle-dev busybox-static clang libclang-rt-14-dev iproute2 \
            runc bubblewrap hyperfine util-linux procps clang-format
PKG_LIBS  = libseccomp libcap jansson libarchive nettle

WARN     = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-nonliteral
CFLAGS_BASE = -std=gnu11 -D_GNU_SOURCE -Iinclude -I$(BUILD)/gen $(WARN) -g -fno-strict-aliasing
CFLAGS  ?= -O2
LDLIBS   = $(shell pkg-config --libs $(PKG_LIBS) 2>/dev/null || echo -lseccomp -lcap -ljansson -larchive -lnettle)
SAN      = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRCS   = $(sort $(wildcard lib/*/*.c))
CTL_SRCS   = $(sort $(wildcard cmd/slicectl/*.c))
UNIT_SRCS  = $(sort $(wildcard tests/unit/test_*.c))
POLICIES   = $(sort $(wildcard policies/seccomp/*.json))
GEN_SRCS   = $(BUILD)/gen/policies.c

OBJ_DIR  = $(BUILD)/obj
ASAN_DIR = $(BUILD)/asan
LIB_OBJS = $(patsubst %.c,$(OBJ_DIR)/%.o,$(LIB_SRCS)) $(OBJ_DIR)/gen/policies.o
CTL_OBJS = $(patsubst %.c,$(OBJ_DIR)/%.o,$(CTL_SRCS))
ASAN_LIB_OBJS = $(patsubst %.c,$(ASAN_DIR)/%.o,$(LIB_SRCS)) $(ASAN_DIR)/gen/policies.o
UNIT_BINS = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
ASAN_UNIT_BINS = $(patsubst tests/unit/%.c,$(ASAN_DIR)/tests/%,$(UNIT_SRCS))
HELPER_SRCS = $(sort $(wildcard tests/integration/helpers/*.c tests/integration/escape/*.c tests/checkpoint/*.c))
HELPER_BINS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(HELPER_SRCS))

.PHONY: all deps test unit unit-asan integration fuzz fuzz-short run bench install clean format format-check
all: $(BUILD)/slicectl $(BUILD)/libvslice.a

deps:
	@missing=""; for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make deps: all packages present"; fi

$(BUILD)/gen/policies.c: $(POLICIES) Makefile
	@mkdir -p $(dir $@)
	@{ echo '/* generated from policies/seccomp/NAME.json by make; do not edit */'; \
	   echo '#include <stddef.h>'; \
	   for f in $(POLICIES); do n=$$(basename $$f .json); \
	     printf 'static const char policy_%s[] =\n' "$$n"; \
	     sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $$f; echo ';'; done; \
	   echo 'const struct { const char *name; const char *text; } vs_builtin_policies[] = {'; \
	   for f in $(POLICIES); do n=$$(basename $$f .json); printf '\t{ "%s", policy_%s },\n' "$$n" "$$n"; done; \
	   echo '	{ NULL, NULL } };'; } > $@

$(OBJ_DIR)/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@
$(ASAN_DIR)/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -c $< -o $@

$(OBJ_DIR)/%.o: %.c $(wildcard include/vslice/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@
$(ASAN_DIR)/%.o: %.c $(wildcard include/vslice/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -c $< -o $@

$(BUILD)/libvslice.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
$(ASAN_DIR)/libvslice.a: $(ASAN_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/slicectl: $(CTL_OBJS) $(BUILD)/libvslice.a
	$(CC) $(CFLAGS) -o $@ $(CTL_OBJS) $(BUILD)/libvslice.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libvslice.a $(LDLIBS) -lcmocka
$(ASAN_DIR)/tests/%: tests/unit/%.c $(ASAN_DIR)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -o $@ $< $(ASAN_DIR)/libvslice.a $(LDLIBS) -lcmocka

# Programs that run inside slices (escape attempts, checkpoint workloads): static.
$(BUILD)/tests/%: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -static -pthread -o $@ $<

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || fail=1; done; exit $$fail
unit-asan: $(ASAN_UNIT_BINS)
	@fail=0; for t in $(ASAN_UNIT_BINS); do echo "== $$t (asan+ubsan)"; \
		ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t || fail=1; done; exit $$fail

integration: all $(HELPER_BINS)
	@bash tests/integration/run.sh

fuzz-short: all
	@bash tests/fuzz/run.sh 10
fuzz: all
	@bash tests/fuzz/run.sh 300

test: deps all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-asan
	@$(MAKE) --no-print-directory integration
	@$(MAKE) --no-print-directory fuzz-short

run: deps all
	@bash tests/run-example.sh

bench: deps all
	@bash tests/bench/run.sh

install: all
	install -D -m 0755 $(BUILD)/slicectl $(DESTDIR)$(PREFIX)/bin/slicectl
	install -D -m 0644 $(BUILD)/libvslice.a $(DESTDIR)$(PREFIX)/lib/libvslice.a
	install -d $(DESTDIR)$(PREFIX)/include/vslice $(DESTDIR)$(PREFIX)/share/vslice/policies/seccomp
	install -m 0644 include/vslice/*.h $(DESTDIR)$(PREFIX)/include/vslice/
	install -m 0644 policies/seccomp/*.json $(DESTDIR)$(PREFIX)/share/vslice/policies/seccomp/
	install -D -m 0644 docs/slicectl.1 $(DESTDIR)$(PREFIX)/share/man/man1/slicectl.1

format:
	clang-format -i $(LIB_SRCS) $(CTL_SRCS) $(UNIT_SRCS) include/vslice/*.h
format-check:
	clang-format --dry-run --Werror $(LIB_SRCS) $(CTL_SRCS) $(UNIT_SRCS) include/vslice/*.h

clean:
	rm -rf $(BUILD)
