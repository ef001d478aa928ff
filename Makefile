# sysvshm developer Makefile.  Every variable can be overridden:
#   make LUA_INCDIR=/opt/lua/include  PREFIX=/usr  DESTDIR=/tmp/stage
LUA_VERSION  ?= 5.4
LUA          ?= lua$(LUA_VERSION)
PKG_CONFIG   ?= pkg-config
LUA_INCDIR   ?= $(shell $(PKG_CONFIG) --cflags-only-I lua$(LUA_VERSION) 2>/dev/null | sed -n "s/^-I//p" | cut -d" " -f1)
ifeq ($(strip $(LUA_INCDIR)),)
LUA_INCDIR   := /usr/include/lua$(LUA_VERSION)
endif
PREFIX       ?= /usr/local
LUA_LIBDIR   ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
BUSTED       ?= busted

CC       ?= cc
OPTFLAGS ?= -O2 -g
WARN     ?= -std=c99 -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes \
            -Wstrict-prototypes -Wwrite-strings
CFLAGS   ?= $(OPTFLAGS)
LIBFLAG  ?= -shared
ALL_CFLAGS = $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE \
             -I$(LUA_INCDIR)

SRCS    = $(wildcard src/*.c)
HDRS    = $(wildcard src/*.h)
include tools/intree.mk
MODULE  = $(BUILD)/sysvshm/core.so
LUAMODS = $(wildcard lua/sysvshm/*.lua)
TESTMODS = $(wildcard lua/sysvshm/testing/*.lua)
CLIMODS = $(wildcard lua/sysvshm/cli/*.lua)
CLICMDS = $(wildcard lua/sysvshm/cli/commands/*.lua)
DEMOS   = $(wildcard lua/demo/*.lua)

# Lua 5.4 finds the in-tree build through the 5.4-only variables, which
# busted's 5.1 launcher does not read; tools/intree.mk says where it is
# (BUILD, LUA_DIR, which make BUILD=... overrides) and tools/intree.lua
# makes the Lua search path.
export LUA_PATH_5_4  := $(shell $(LUA) tools/intree.lua $(CURDIR) path);$(LUA_PATH_5_4);;
export LUA_CPATH_5_4 := $(CURDIR)/$(BUILD)/?.so;$(LUA_CPATH_5_4);;

.PHONY: all test stress check demo bench doc install uninstall clean fuzz fuzz-build

# libFuzzer targets (fuzz/): each fuzz/<target>.lua run by fuzz/driver.c,
# linked with the module's sources, built with clang's libFuzzer, ASan and
# UBSan (Debian: clang libclang-rt-14-dev).  `make fuzz` builds them and
# runs each for FUZZ_SECONDS (fuzz/run.sh: seed corpus fuzz/corpus/<target>,
# findings and new inputs in a scratch directory, FUZZ_WORK).
FUZZ_CC      ?= clang
FUZZ_CFLAGS  ?= -O1 -g -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_LIBS    ?= $(shell $(PKG_CONFIG) --libs lua$(LUA_VERSION) 2>/dev/null || echo -llua$(LUA_VERSION))
FUZZ_TARGETS ?= pack channel dict
FUZZ_SECONDS ?= 45
FUZZ_BINS     = $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)

all: $(MODULE)

$(MODULE): $(SRCS) $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $(SRCS) $(LDFLAGS)

# The suite, then its verdict (tools/busted_summary.sh): fails on a failed
# test and on any pending test that is not an environment skip (#env),
# and prints how many of those there were.
test: $(MODULE)
	@out=$$(mktemp) && rc=$$(mktemp) && \
	echo "$(BUSTED) --lua=$(LUA)" && \
	{ $(BUSTED) --lua=$(LUA) 2>&1; echo $$? >"$$rc"; } | tee "$$out"; \
	sh tools/busted_summary.sh "$$out"; verdict=$$?; \
	code=$$(cat "$$rc"); rm -f "$$out" "$$rc"; \
	[ "$$code" = 0 ] && [ "$$verdict" = 0 ]

# The multi-process stress tests alone (#stress: left out of `make test`,
# run by `make check` under ASan and the collector stress gate).
stress: $(MODULE)
	$(BUSTED) --lua=$(LUA) --exclude-tags=manual --tags=stress

# The reliability gates: sanitizers, valgrind, linters (tools/check.sh).
check: $(MODULE)
	sh tools/check.sh

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	FUZZ_BIN=$(BUILD)/fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh $(FUZZ_TARGETS)

$(BUILD)/fuzz/%: fuzz/driver.c $(SRCS) $(HDRS) Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -D_GNU_SOURCE -I$(LUA_INCDIR) -Isrc \
	  -DFUZZ_TARGET='"$*"' -DFUZZ_ROOT='"$(CURDIR)"' -o $@ \
	  fuzz/driver.c $(SRCS) -Wl,--wrap=shmat $(FUZZ_LIBS)

# The API reference, from the doc comments (config.ld), into doc/.
doc:
	ldoc .

demo: $(MODULE)
	sh lua/demo/run.sh

bench: $(MODULE)
	sh bench/run.sh

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/sysvshm $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/demo \
	  $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/testing $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/cli/commands \
	  $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/sysvshm/core.so
	install -m 0644 $(LUAMODS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/
	install -m 0644 $(TESTMODS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/testing/
	install -m 0644 $(CLIMODS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/cli/
	install -m 0644 $(CLICMDS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/cli/commands/
	install -m 0644 $(DEMOS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/demo/
	install -m 0755 bin/sysvshm $(DESTDIR)$(PREFIX)/bin/sysvshm

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sysvshm
	rm -f $(DESTDIR)$(LUA_LIBDIR)/sysvshm/core.so
	rm -rf $(DESTDIR)$(LUA_SHAREDIR)/sysvshm

clean:
	rm -rf $(BUILD)
