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
BUILD   = build
MODULE  = $(BUILD)/sysvshm/core.so
LUAMODS = $(wildcard lua/sysvshm/*.lua)
DEMOS   = $(wildcard lua/demo/*.lua)

# Lua 5.4 finds the in-tree build through the 5.4-only variables, which
# busted's 5.1 launcher does not read.
export LUA_PATH_5_4  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(LUA_PATH_5_4);;
export LUA_CPATH_5_4 := $(CURDIR)/$(BUILD)/?.so;$(LUA_CPATH_5_4);;

.PHONY: all test check demo bench doc install uninstall clean

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

# The reliability gates: sanitizers, valgrind, linters (tools/check.sh).
check: $(MODULE)
	sh tools/check.sh

# The API reference, from the doc comments (config.ld), into doc/.
doc:
	ldoc .

demo: $(MODULE)
	sh lua/demo/run.sh

bench: $(MODULE)
	sh bench/run.sh

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/sysvshm $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/demo $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/sysvshm/core.so
	install -m 0644 $(LUAMODS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/
	install -m 0644 $(DEMOS) $(DESTDIR)$(LUA_SHAREDIR)/sysvshm/demo/
	install -m 0755 bin/sysvshm $(DESTDIR)$(PREFIX)/bin/sysvshm

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/sysvshm
	rm -f $(DESTDIR)$(LUA_LIBDIR)/sysvshm/core.so
	rm -rf $(DESTDIR)$(LUA_SHAREDIR)/sysvshm

clean:
	rm -rf $(BUILD)
