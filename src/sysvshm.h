/*
 * sysvshm: System V shared memory for Lua 5.4.
 * Shared declarations of the C core (built as the module `sysvshm.core`).
 *
 * Files:
 *   core.c     module functions (ftok, create, open, attach, stat, remove,
 *              the shmget/shmat/shmdt/shmctl mirrors, constants, sleep)
 *   segment.c  the segment userdata, its byte/string methods and the
 *              argument checkers every file uses
 *   pack.c     seg:pack / seg:unpack (string.pack's format, in place) and
 *              the packer/unpacker the channel shares (pack.h)
 *   sync.c     atomics, futex wait/wake, the mutex handle
 *   lock.c     the lock word under the mutex and the channel
 *   channel.c  a multi-process message queue in a segment region
 *   sem.c      System V semaphore sets (the core's table `sem`)
 */
#ifndef SYSVSHM_H
#define SYSVSHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lua.h"
#include "lauxlib.h"

#ifndef SYSVSHM_VERSION
#define SYSVSHM_VERSION "scm-1" /* keep equal to the rockspec version */
#endif

#define SEGMENT_TNAME "sysvshm.segment"

/* An attachment.  `addr` is NULL once detached; `size` and `id` stay so that
 * tostring can still describe it. */
typedef struct Segment {
  const void *tag; /* marks a real segment (segment.c) */
  unsigned char *addr;
  size_t size;
  int id;
  int readonly;
  int locks; /* mutexes in it held through this attachment (sync.c) */
} Segment;

/* Every function that takes a segment carries the segment metatable as
 * upvalue 1, so the type check is a pointer comparison instead of a
 * registry lookup. */
#define SEG_MT_UPVALUE lua_upvalueindex(1)

#if defined(__GNUC__)
#define SHM_NORETURN __attribute__((noreturn))
#define SHM_LIKELY(x) __builtin_expect(!!(x), 1)
#define SHM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SHM_NORETURN
#define SHM_LIKELY(x) (x)
#define SHM_UNLIKELY(x) (x)
#endif

/* The checkers below run on every method call, so they are inline, with
 * their error paths (which raise) out of line in segment.c. */

/* segment.c: the userdata */
extern const char seg_tag; /* its address marks a real segment */
Segment *seg_new(lua_State *L);               /* pushes a detached userdata */
int seg_detach(Segment *s);                   /* 0, or -1 with errno */
SHM_NORETURN void seg_argfail(lua_State *L, int arg, int need);
int seg_pushdetach(lua_State *L, Segment *s); /* true, or nil, msg, errno */
void seg_createmeta(lua_State *L);            /* pushes the metatable */
void seg_setmethods(lua_State *L, const luaL_Reg *l); /* into the metatable's __index,
                                                          metatable on the stack top */

/* A segment (attached or not), or NULL.  A full userdata of our size whose
 * tag is &seg_tag was made by seg_new (Lua code cannot forge userdata
 * contents): cheaper than comparing metatables on every call. */
static inline Segment *seg_test(lua_State *L, int arg) {
  Segment *s = (Segment *)lua_touserdata(L, arg);

  if (s == NULL || lua_rawlen(L, arg) != sizeof *s || s->tag != &seg_tag)
    return NULL;

  return s;
}

/* need: 0 any segment, 1 attached, 2 attached and writable; raises. */
static inline Segment *seg_need(lua_State *L, int arg, int need) {
  Segment *s = seg_test(L, arg);

  if (SHM_LIKELY(s != NULL && (need < 1 || s->addr != NULL) &&
                 (need < 2 || !s->readonly)))
    return s;

  seg_argfail(L, arg, need);
}

/* Raises "segment detached during the call" (segment.c). */
SHM_NORETURN void seg_lostfail(lua_State *L);

/* The address of s, fetched again after anything that can run Lua code:
 * an allocation (pushing a new string, a userdata, a table; luaL_Buffer
 * growth), a number converted to a string (lua_tolstring,
 * luaL_checklstring), a metamethod (lua_getfield on a table that has one).
 * Any of them can run a garbage collector step, and any finalizer may
 * detach s.  seg_check* at entry is not enough for a method that makes
 * such a call before it touches the memory: it must convert all its
 * arguments first and take the address from here afterwards, with no Lua
 * call in between (a loop that pushes values read from the segment calls
 * it again before each read). */
static inline unsigned char *seg_addr(lua_State *L, const Segment *s) {
  if (SHM_LIKELY(s->addr != NULL))
    return s->addr;

  seg_lostfail(L);
}

static inline Segment *seg_checkany(lua_State *L, int arg) { return seg_need(L, arg, 0); }
static inline Segment *seg_check(lua_State *L, int arg) { return seg_need(L, arg, 1); }
static inline Segment *seg_checkw(lua_State *L, int arg) { return seg_need(L, arg, 2); }

/* segment.c: argument checkers shared by all files */
lua_Integer shmL_checkint_slow(lua_State *L, int arg); /* not an integer */
SHM_NORETURN void shmL_offsetfail(lua_State *L, int arg, lua_Integer v,
                                  const Segment *s);
SHM_NORETURN void shmL_rangefail(lua_State *L, int arg, const Segment *s,
                                 size_t off, size_t len);
lua_Number shmL_checknumber(lua_State *L, int arg);
lua_Integer shmL_optint(lua_State *L, int arg, lua_Integer def);
int shmL_pusherror(lua_State *L, const char *what); /* nil, "what: strerror", errno */
int shmL_checkmode(lua_State *L, int arg, lua_Integer v); /* 0..0777 */
void *shmL_newhandle(lua_State *L, size_t size); /* see segment.c */
key_t shmL_checkkey(lua_State *L, int arg); /* a 32-bit System V key */
int shmL_optfield_int(lua_State *L, int arg, const char *k, lua_Integer *v);
int shmL_optfield_bool(lua_State *L, int arg, const char *k, int def);
int shmL_optfield_seconds(lua_State *L, int arg, const char *k, double *v);
/* nil/none, or a table with only the keys in names (NULL-terminated) */
void shmL_checkopts(lua_State *L, int arg, const char *const names[]);

/* An integer argument, strictly: a number with an exact integer value.
 * Strings are refused (no "10" for 10), unlike luaL_checkinteger, so that a
 * string passed in the wrong position is never taken for an offset. */
static inline lua_Integer shmL_checkint(lua_State *L, int arg) {
  if (SHM_LIKELY(lua_isinteger(L, arg)))
    return lua_tointegerx(L, arg, NULL);

  return shmL_checkint_slow(L, arg);
}

/* An offset into the segment: 0..size (size itself only for empty access). */
static inline size_t shmL_checkoffset(lua_State *L, int arg, const Segment *s) {
  lua_Integer v = shmL_checkint(L, arg);

  if (SHM_LIKELY(v >= 0 && (lua_Unsigned)v <= s->size))
    return (size_t)v;

  shmL_offsetfail(L, arg, v, s);
}

/* len bytes from off must lie in the segment; off <= size is already known,
 * so the subtraction cannot wrap and the check cannot overflow. */
static inline void shmL_checkrange(lua_State *L, int arg, const Segment *s,
                                   size_t off, size_t len) {
  if (len > s->size - off)
    shmL_rangefail(L, arg, s, off, len);
}

/* segment.c: the size argument of a region's constructor at arg (none or
 * nil: the rest of s after off, which must be <= s->size) */
size_t shmL_optregion(lua_State *L, int arg, const Segment *s, size_t off);

/* pack.c: see pack.h */

/* sync.c: with the module table at -2 and the segment metatable at -1 */
void sync_open(lua_State *L);

/* sync.c: helpers for blocking calls (channel.c) */
struct timespec;
size_t shmL_checkaligned(lua_State *L, int arg, const Segment *s, size_t width,
                         size_t align);
int sync_opttimeout(lua_State *L, int arg, double *seconds); /* 0: for ever */
void sync_deadline(struct timespec *ts, double seconds);     /* monotonic */
int sync_timeleft(const struct timespec *deadline, struct timespec *rel); /* 0: passed */
/* What a blocking call notes when it starts, to tell when the interpreter
 * has a signal (Ctrl-C) to raise (sync.c). */
typedef struct ShmWaiter {
  lua_State *L, *M; /* the calling thread, the main thread */
  lua_Hook hook, mhook;
} ShmWaiter;
void sync_waitstart(lua_State *L, ShmWaiter *wt); /* makes no Lua call */
lua_State *sync_mainthread(lua_State *L);        /* handles cache it */

/* As sync_waitstart, with the main thread already known (M). */
static inline void sync_waitinit(ShmWaiter *wt, lua_State *L, lua_State *M) {
  wt->L = L;
  wt->M = M;
  wt->hook = lua_gethook(L);
  wt->mhook = lua_gethook(M);
}
int sync_interrupted(const ShmWaiter *wt);
int sync_futexwait(const ShmWaiter *wt, uint32_t *word, uint32_t expected,
                   const struct timespec *deadline); /* 1 woken, 0 timeout,
                                                          2 signal, -1 */
int sync_futexwake(uint32_t *word, int n);

/* lock.c: a lock that is one 64-bit word in shared memory (see lock.c).
 * Results of shm_lock and shm_trylock; shm_unlock gives OK or NOTOWNER. */
enum {
  SHM_LOCK_OK,
  SHM_LOCK_OWNERDIED,  /* taken over from a dead owner */
  SHM_LOCK_TIMEOUT,
  SHM_LOCK_INTERRUPTED, /* the interpreter has a signal (Ctrl-C) to raise */
  SHM_LOCK_DEADLK,     /* this thread holds it already */
  SHM_LOCK_BUSY,       /* trylock: held */
  SHM_LOCK_NOTOWNER    /* unlock: not held by this thread (taken over as
                          dead, reinitialised or overwritten) */
};
#define SHM_LOCK_SIZE 8
void shm_lockinit(uint64_t *w); /* free; wakes whoever sleeps on it */
int shm_lock(const ShmWaiter *wt, uint64_t *w, const struct timespec *deadline);
int shm_trylock(uint64_t *w);
int shm_lockfast(uint64_t *w); /* take a free lock, or BUSY; judges nobody */
int shm_unlock(uint64_t *w);
int shm_lockheld(const uint64_t *w); /* held by this thread */

/* channel.c: with the module table at -2 and the segment metatable at -1 */
void channel_open(lua_State *L);

/* dict.c: with the module table at -2 and the segment metatable at -1 */
void dict_open_module(lua_State *L);

/* sem.c: with the module table at -2 and the segment metatable at -1 */
void sem_open_module(lua_State *L);

#endif
