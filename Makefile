# vslice - build, test, run, bench.
#   make deps    install every Debian package build, tests and run need (idempotent)
#   make         build/slicectl and build/libvslice.a
#   make test    unit tests (plain + ASan/UBSan), integration tests as root, short fuzz runs:
#                everything built at once (-j), then run side by side (tests/integration/run.sh --all)
#   make run     the main job: build the busybox image, run the example experiment
#   make bench   start latency and density benchmarks (tests/bench), results in docs/benchmarks.md

CC       ?= gcc
# The one place the version is set: slicectl --version, vslice-registry and
# vslice-nodemgr --version and what a node reports to the registry all read
# it from $(BUILD)/gen/vslice_version.h, rewritten only when it changes.
VERSION   = 0.2.0
PREFIX   ?= /usr/local
BUILD    ?= build
DEPS_PKGS = build-essential pkg-config libseccomp-dev libcap-dev libjansson-dev libcmocka-dev \
            libarchive-dev nettle-dev busybox-static clang libclang-rt-14-dev iproute2 \
            runc bubblewrap hyperfine util-linux procps clang-format python3 \
            libmicrohttpd-dev libcurl4-openssl-dev libsqlite3-dev sqlite3 curl e2fsprogs \
            libnl-3-dev libnl-route-3-dev libnftables-dev nftables iperf3 openssl \
            gnuplot-nox libbpf-dev bpftool
PKG_LIBS  = libseccomp libcap jansson libarchive nettle libmicrohttpd libcurl sqlite3 \
            libnl-3.0 libnl-route-3.0 libnftables

WARN     = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-nonliteral
CFLAGS_BASE = -std=gnu11 -D_GNU_SOURCE -Iinclude -I$(BUILD)/gen $(WARN) -g -fno-strict-aliasing \
              $(shell pkg-config --cflags-only-I libnl-3.0 2>/dev/null || echo -I/usr/include/libnl3)
CFLAGS  ?= -O2
# libnftables is not linked: lib/netcfg/nft_dl.c loads it on first use
# (as http_client.c does libcurl), so a start without a bridge never maps it.
LDLIBS   = $(filter-out -lnftables,$(shell pkg-config --libs $(PKG_LIBS) 2>/dev/null || echo -lseccomp -lcap -ljansson -larchive -lnettle -lmicrohttpd -lcurl -lsqlite3 -lnl-route-3 -lnl-3)) -pthread -ldl
SAN      = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRCS   = $(sort $(wildcard lib/*/*.c))
CTL_SRCS   = $(sort $(wildcard cmd/slicectl/*.c))
REG_SRCS   = $(sort $(wildcard cmd/registry/*.c))
NM_SRCS    = $(sort $(wildcard cmd/nodemgr/*.c))
UNIT_SRCS  = $(sort $(wildcard tests/unit/test_*.c))
POLICIES   = $(sort $(wildcard policies/seccomp/*.json))
GEN_SRCS   = $(BUILD)/gen/policies.c $(BUILD)/gen/init_blob.S $(BUILD)/gen/fast_blob.S
INIT_SRCS  = cmd/init/main.c lib/runtime/reaper.c

OBJ_DIR  = $(BUILD)/obj
ASAN_DIR = $(BUILD)/asan
LIB_OBJS = $(patsubst %.c,$(OBJ_DIR)/%.o,$(LIB_SRCS)) $(OBJ_DIR)/gen/policies.o $(OBJ_DIR)/gen/init_blob.o \
           $(OBJ_DIR)/gen/fast_blob.o
CTL_OBJS = $(patsubst %.c,$(OBJ_DIR)/%.o,$(CTL_SRCS))
REG_OBJS = $(patsubst %.c,$(OBJ_DIR)/%.o,$(REG_SRCS))
NM_OBJS  = $(patsubst %.c,$(OBJ_DIR)/%.o,$(NM_SRCS))
ASAN_LIB_OBJS = $(patsubst %.c,$(ASAN_DIR)/%.o,$(LIB_SRCS)) $(ASAN_DIR)/gen/policies.o $(OBJ_DIR)/gen/init_blob.o \
                $(OBJ_DIR)/gen/fast_blob.o
UNIT_BINS = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
ASAN_UNIT_BINS = $(patsubst tests/unit/%.c,$(ASAN_DIR)/tests/%,$(UNIT_SRCS))
HELPER_SRCS = $(sort $(wildcard tests/integration/helpers/*.c tests/integration/escape/*.c tests/checkpoint/*.c))
HELPER_BINS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(HELPER_SRCS))
# Test tools that drive the library directly (not in a slice): linked with it.
TOOL_SRCS = $(sort $(wildcard tests/integration/tools/*.c))
TOOL_BINS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(TOOL_SRCS))
# The migration stream (lib/node/slice_xfer.c) from a shell: test_xfer.sh, bench/migrate.sh.
XFER_TOOL = $(BUILD)/tests/xfer/xfer
HELPER_BINS += $(XFER_TOOL)
$(XFER_TOOL): tests/xfer/xfer.c $(BUILD)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libvslice.a $(LDLIBS)

.PHONY: FORCE all deps test test-bins asan-bins unit unit-asan integration cluster-asan fuzz fuzz-short fuzz-bins ckpt-bins run bench bench-bins install clean format format-check
all: $(BUILD)/slicectl $(BUILD)/vslice-registry $(BUILD)/vslice-nodemgr $(BUILD)/libvslice.a

deps:
	@missing=""; for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "make deps: all packages present"; fi

$(BUILD)/gen/vslice_version.h: FORCE
	@mkdir -p $(dir $@)
	@v='#define VSLICE_VERSION "$(VERSION)"'; \
	if [ "$$(cat $@ 2>/dev/null)" != "$$v" ]; then echo "$$v" > $@; fi
FORCE:

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

# PID 1 of idle slices: static, libc only; embedded into libvslice (init_blob.S).
$(BUILD)/vslice-init: $(INIT_SRCS) include/vslice/reaper.h
	$(CC) -std=gnu11 -D_GNU_SOURCE -Iinclude $(WARN) -O2 -static -o $@ $(INIT_SRCS)

$(BUILD)/gen/init_blob.S: $(BUILD)/vslice-init
	@mkdir -p $(dir $@)
	@{ echo '/* generated by make: the static vslice-init and its sha256 */'; \
	   echo '	.section .rodata'; \
	   echo '	.global vs_init_blob, vs_init_blob_end, vs_init_hash'; \
	   echo '	.balign 64'; \
	   echo 'vs_init_blob:'; \
	   echo '	.incbin "$(BUILD)/vslice-init"'; \
	   echo 'vs_init_blob_end:'; \
	   echo "vs_init_hash:	.asciz \"$$(sha256sum $(BUILD)/vslice-init | cut -c1-64)\""; \
	   echo '	.section .note.GNU-stack,"",@progbits'; } > $@
$(OBJ_DIR)/gen/init_blob.o: $(BUILD)/gen/init_blob.S
	@mkdir -p $(dir $@)
	$(CC) -c $< -o $@

# The bridge's fast path (lib/netcfg/fast.c): a tc BPF program, built with
# clang for the BPF target and embedded like vslice-init (libbpf loads it
# from memory).
$(BUILD)/fast.bpf.o: lib/netcfg/bpf/fast.bpf.c
	@mkdir -p $(dir $@)
	clang -O2 -g -target bpf -I/usr/include/$(shell $(CC) -dumpmachine) -Wall -Werror -c $< -o $@
$(BUILD)/gen/fast_blob.S: $(BUILD)/fast.bpf.o
	@mkdir -p $(dir $@)
	@{ echo '/* generated by make: lib/netcfg/bpf/fast.bpf.c for the BPF target */'; \
	   echo '	.section .rodata'; \
	   echo '	.global vs_fast_obj, vs_fast_obj_end'; \
	   echo '	.balign 8'; \
	   echo 'vs_fast_obj:'; \
	   echo '	.incbin "$(BUILD)/fast.bpf.o"'; \
	   echo 'vs_fast_obj_end:'; \
	   echo '	.section .note.GNU-stack,"",@progbits'; } > $@
$(OBJ_DIR)/gen/fast_blob.o: $(BUILD)/gen/fast_blob.S
	@mkdir -p $(dir $@)
	$(CC) -c $< -o $@

$(OBJ_DIR)/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@
$(ASAN_DIR)/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -c $< -o $@

$(OBJ_DIR)/%.o: %.c $(wildcard include/vslice/*.h lib/*/*.h) $(BUILD)/gen/vslice_version.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -c $< -o $@
$(ASAN_DIR)/%.o: %.c $(wildcard include/vslice/*.h lib/*/*.h) $(BUILD)/gen/vslice_version.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -c $< -o $@

$(BUILD)/libvslice.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
$(ASAN_DIR)/libvslice.a: $(ASAN_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# slicectl loads libarchive only for image import (lib/image/archive_dl.c).
CTL_LDLIBS = -Wl,--as-needed $(filter-out -larchive,$(LDLIBS)) -ldl
$(BUILD)/slicectl: $(CTL_OBJS) $(BUILD)/libvslice.a
	$(CC) $(CFLAGS) -o $@ $(CTL_OBJS) $(BUILD)/libvslice.a $(CTL_LDLIBS)
$(BUILD)/vslice-registry: $(REG_OBJS) $(BUILD)/libvslice.a
	$(CC) $(CFLAGS) -o $@ $(REG_OBJS) $(BUILD)/libvslice.a $(CTL_LDLIBS)
$(BUILD)/vslice-nodemgr: $(NM_OBJS) $(BUILD)/libvslice.a
	$(CC) $(CFLAGS) -o $@ $(NM_OBJS) $(BUILD)/libvslice.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libvslice.a $(LDLIBS) -lcmocka
$(ASAN_DIR)/tests/%: tests/unit/%.c $(ASAN_DIR)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -o $@ $< $(ASAN_DIR)/libvslice.a $(LDLIBS) -lcmocka

$(BUILD)/tests/integration/tools/%: tests/integration/tools/%.c $(BUILD)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libvslice.a $(LDLIBS)

# Programs that run inside slices (escape attempts, checkpoint workloads): static.
$(BUILD)/tests/%: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -static -pthread -o $@ $<

# The attack and checkpoint programs share a header in their directory.
$(filter $(BUILD)/tests/integration/escape/%,$(HELPER_BINS)): $(wildcard tests/integration/escape/*.h)
$(filter $(BUILD)/tests/checkpoint/%,$(HELPER_BINS)): $(wildcard tests/checkpoint/*.h)

unit: $(UNIT_BINS)
	@bash tests/unit/run.sh
unit-asan: $(ASAN_UNIT_BINS)
	@bash tests/unit/run.sh --asan

integration: all $(HELPER_BINS) $(TOOL_BINS)
	@bash tests/integration/run.sh

# The daemons built with ASan+UBSan (leak checks at exit), through the cluster test.
$(ASAN_DIR)/vslice-%: $(ASAN_DIR)/libvslice.a cmd/%/main.c
	$(CC) $(CFLAGS_BASE) -O1 $(SAN) -o $@ $(patsubst $(ASAN_DIR)/vslice-%,cmd/%/main.c,$@) $(ASAN_DIR)/libvslice.a $(LDLIBS)
cluster-asan: all $(ASAN_DIR)/vslice-registry $(ASAN_DIR)/vslice-nodemgr
	@bash tests/cluster/asan.sh

# The fuzz targets (libFuzzer, clang) against the library built once with
# ASan+UBSan and fuzzer coverage; tests/fuzz/run.sh SECONDS [NAME...] runs them.
FUZZ_DIR    = $(BUILD)/fuzz
FUZZ_SRCS   = $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS   = $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(FUZZ_SRCS))
FUZZ_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(filter -I%,$(CFLAGS_BASE)) -g -O1 -fno-sanitize-recover=undefined
FUZZ_LIB_OBJS = $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(LIB_SRCS)) $(FUZZ_DIR)/obj/gen/policies.o $(OBJ_DIR)/gen/fast_blob.o
$(FUZZ_DIR)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@
$(FUZZ_DIR)/obj/%.o: %.c $(wildcard include/vslice/*.h lib/*/*.h) $(BUILD)/gen/vslice_version.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJS) $(BUILD)/gen/init_blob.S
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_LIB_OBJS) $(BUILD)/gen/init_blob.S $(LDLIBS)
fuzz-bins: $(FUZZ_BINS)
# (the library objects are kept: make would delete them as intermediates)
.SECONDARY: $(FUZZ_LIB_OBJS)

fuzz-short: fuzz-bins
	@bash tests/fuzz/run.sh 10
fuzz: fuzz-bins
	@bash tests/fuzz/run.sh 300

# The checkpoint harness (tests/checkpoint/run.sh builds it when stale; here
# so the suite's two passes, run side by side, find it built).
ckpt-bins: $(filter $(BUILD)/tests/checkpoint/%,$(HELPER_BINS))
	@bash tests/checkpoint/run.sh --build-only

# Every program the suites run, built in parallel; then every suite side by
# side. The ASan and fuzz builds are made by their own lanes of that run
# (asan-bins, fuzz-bins), beside the suites that wait on slivers.
NPROC := $(shell nproc 2>/dev/null || echo 2)
test-bins: all $(UNIT_BINS) $(HELPER_BINS) $(TOOL_BINS) ckpt-bins
asan-bins: $(ASAN_UNIT_BINS) $(ASAN_DIR)/vslice-registry $(ASAN_DIR)/vslice-nodemgr
test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) test-bins
	@$(MAKE) --no-print-directory format-check
	@bash tests/integration/run.sh --all

run: deps all
	@bash tests/run-example.sh

# Static programs the migration benchmarks put into slices (the busybox image
# has no libc): tests/bench/migrate_live.sh, migrate_watch.sh.
BENCH_BINS = $(BUILD)/bench/bin/memload $(BUILD)/bench/bin/reqecho $(BUILD)/bench/bin/reqwatch
$(BUILD)/bench/bin/%: tests/bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -static -o $@ $<
# Linked with libvslice (it compiles the policy both ways): docs/benchmarks.md 7c.
$(BUILD)/bench/seccomp_attach: tests/bench/seccomp_attach.c $(BUILD)/libvslice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libvslice.a $(LDLIBS)
bench-bins: $(BENCH_BINS) $(BUILD)/bench/seccomp_attach

bench: deps all bench-bins
	@bash tests/bench/run.sh

install: all
	install -D -m 0755 $(BUILD)/slicectl $(DESTDIR)$(PREFIX)/bin/slicectl
	install -D -m 0755 $(BUILD)/vslice-registry $(DESTDIR)$(PREFIX)/bin/vslice-registry
	install -D -m 0755 $(BUILD)/vslice-nodemgr $(DESTDIR)$(PREFIX)/bin/vslice-nodemgr
	install -D -m 0644 $(BUILD)/libvslice.a $(DESTDIR)$(PREFIX)/lib/libvslice.a
	install -d $(DESTDIR)$(PREFIX)/include/vslice $(DESTDIR)$(PREFIX)/share/vslice/policies/seccomp
	install -m 0644 include/vslice/*.h $(DESTDIR)$(PREFIX)/include/vslice/
	install -m 0644 policies/seccomp/*.json $(DESTDIR)$(PREFIX)/share/vslice/policies/seccomp/
	install -D -m 0644 docs/slicectl.1 $(DESTDIR)$(PREFIX)/share/man/man1/slicectl.1

format:
	clang-format -i $(LIB_SRCS) $(CTL_SRCS) $(REG_SRCS) $(NM_SRCS) $(UNIT_SRCS) include/vslice/*.h
format-check:
	@clang-format --dry-run --Werror $(LIB_SRCS) $(CTL_SRCS) $(REG_SRCS) $(NM_SRCS) $(UNIT_SRCS) include/vslice/*.h

clean:
	rm -rf $(BUILD)
