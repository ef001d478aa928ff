/*
 * The libFuzzer driver shared by every fuzz target (make fuzz): a real
 * lua_State with the module linked in (the sources of src/, built with the
 * sanitizers and libFuzzer's coverage), a real System V segment, and a Lua
 * script that does the work: fuzz/<target>.lua.
 *
 * The script returns a table with
 *   segsize               the segment's size (optional; a multiple of the
 *                         page size, see the guard pages)
 *   init(segid, segsize)  attach the segment (core.attach), set up state
 *   one(data)             run one input (a Lua string)
 * The script may require modules of fuzz/ (package.path has lua/ and
 * fuzz/ of the tree): the region targets share fuzz/region.lua.
 * An error out of one() is a finding (an oracle the script checks did not
 * hold): the driver prints it and aborts, so libFuzzer saves the input.
 * The script catches the errors the module may legitimately raise.
 *
 * The segment is made with IPC_PRIVATE, removed at exit (atexit) and also
 * marked for removal (IPC_RMID) as soon as the script has attached it, so
 * that it cannot outlive the process even if that is killed.
 *
 * Guard pages: AddressSanitizer does not see shared memory, so an access
 * past a segment would go unnoticed.  The module's shmat calls are wrapped
 * (-Wl,--wrap=shmat): an attachment at an address of the system's choice
 * is placed instead between two PROT_NONE pages of a reservation, and the
 * segment size is a multiple of the page size, so a read or write just past
 * either end of the segment faults and libFuzzer reports it.
 *
 * Build (see the Makefile's fuzz target):
 *   clang -fsanitize=fuzzer,address,undefined -DFUZZ_TARGET='"pack"'
 *     -DFUZZ_ROOT='"/path/to/tree"' fuzz/driver.c src/[a-z]*.c
 *     -Wl,--wrap=shmat -llua5.4
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#ifndef FUZZ_TARGET
#error "define FUZZ_TARGET (the script's name in fuzz/)"
#endif
#ifndef FUZZ_ROOT
#error "define FUZZ_ROOT (the source tree)"
#endif

#define DEFAULT_SEGSIZE 65536

int luaopen_sysvshm_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void *__real_shmat(int id, const void *addr, int flags);
void *__wrap_shmat(int id, const void *addr, int flags);

static lua_State *L;
static int segid = -1;

/* shmat at an address of the system's choice, between two guard pages */
void *__wrap_shmat(int id, const void *addr, int flags) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  struct shmid_ds ds;
  size_t len;
  unsigned char *base;
  void *p;

  if (addr != NULL || shmctl(id, IPC_STAT, &ds) != 0)
    return __real_shmat(id, addr, flags);

  len = (ds.shm_segsz + page - 1) / page * page;
  base = mmap(NULL, len + 2 * page, PROT_NONE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED)
    return __real_shmat(id, addr, flags);

  p = __real_shmat(id, base + page, flags | SHM_REMAP);
  if (p == (void *)-1) {
    int en = errno;

    munmap(base, len + 2 * page);
    errno = en;
  }
  return p; /* the reservation stays (a few pages, once per attach) */
}

static void remove_segment(void) {
  if (segid >= 0)
    shmctl(segid, IPC_RMID, NULL);
  segid = -1;
}

static void die(const char *what) {
  fprintf(stderr, "fuzz/%s: %s: %s\n", FUZZ_TARGET, what,
          L != NULL && lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  fflush(stderr);
  abort();
}

/* At exit (libFuzzer's too, after -max_total_time): everything the state
 * holds is freed, so that LeakSanitizer's report at exit shows real leaks
 * only. */
static void close_state(void) {
  if (L != NULL)
    lua_close(L);
  L = NULL;
}

static int traceback(lua_State *T) {
  luaL_traceback(T, T, lua_tostring(T, 1), 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  lua_Integer segsize;

  (void)argc;
  (void)argv;

  L = luaL_newstate();
  if (L == NULL)
    die("luaL_newstate");
  atexit(close_state);
  luaL_openlibs(L);
  luaL_requiref(L, "sysvshm.core", luaopen_sysvshm_core, 0);
  lua_pop(L, 1);

  /* the Lua modules from the tree (sysvshm.channel, ...) and the targets'
   * shared harness (fuzz/region.lua: require "region"), nothing else */
  lua_getglobal(L, "package");
  lua_pushstring(L, FUZZ_ROOT "/lua/?.lua;" FUZZ_ROOT "/lua/?/init.lua;"
                    FUZZ_ROOT "/fuzz/?.lua");
  lua_setfield(L, -2, "path");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);

  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, FUZZ_ROOT "/fuzz/" FUZZ_TARGET ".lua") != LUA_OK ||
      lua_pcall(L, 0, 1, 1) != LUA_OK)
    die("loading the script");
  if (!lua_istable(L, -1))
    die("the script must return a table");
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.target");

  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.target");
  lua_getfield(L, -1, "segsize");
  segsize = lua_isnil(L, -1) ? DEFAULT_SEGSIZE : lua_tointeger(L, -1);
  if (segsize <= 0 || segsize % sysconf(_SC_PAGESIZE) != 0)
    die("segsize must be a multiple of the page size");
  lua_pop(L, 2);

  segid = shmget(IPC_PRIVATE, (size_t)segsize, IPC_CREAT | 0600);
  if (segid < 0) {
    perror("fuzz: shmget");
    exit(2);
  }
  atexit(remove_segment);

  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.target");
  lua_getfield(L, -1, "init");
  lua_pushinteger(L, segid);
  lua_pushinteger(L, segsize);
  if (lua_pcall(L, 2, 0, 1) != LUA_OK)
    die("init");
  lua_settop(L, 0);

  remove_segment(); /* attached now: gone when the process is */

  lua_pushcfunction(L, traceback);     /* 1 */
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.target");
  lua_getfield(L, -1, "one");          /* 3 */
  lua_remove(L, 2);
  if (!lua_isfunction(L, 2))
    die("the script has no function 'one'");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_pushvalue(L, 2);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 1) != LUA_OK)
    die("finding");
  lua_settop(L, 2);
  return 0;
}
