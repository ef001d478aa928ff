/*
 * Coordination in a segment: sequentially consistent atomics on 64-bit
 * integers, futex wait/wake on 32-bit words (shared futexes, so they work
 * across processes), and the mutex handle (its lock is lock.c's).
 */

/***
 * @module sysvshm
 */

/***
 * Atomics, futexes and the mutex.
 * Coordination between processes: atomic segment methods, futex wait and
 * wake, the monotonic clock, and the robust mutex and its methods.
 * @section sync
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sysvshm.h"

#define MUTEX_TNAME "sysvshm.mutex"

/* ---- time ---------------------------------------------------------------- */

/* A timeout argument: none, nil or math.huge mean forever (returns 0);
 * otherwise a finite non-negative number of seconds (returns 1). */
int sync_opttimeout(lua_State *L, int arg, double *seconds) {
  lua_Number t;

  if (lua_isnoneornil(L, arg))
    return 0;

  t = shmL_checknumber(L, arg);
  if (t == HUGE_VAL)
    return 0;

  if (!(t >= 0))
    luaL_argerror(L, arg, "timeout must be a non-negative number of seconds");

  *seconds = t;
  return 1;
}

void sync_deadline(struct timespec *ts, double seconds) {
  double whole = floor(seconds);

  clock_gettime(CLOCK_MONOTONIC, ts);
  if (whole > (double)(INT32_MAX)) { /* far enough to be forever */
    ts->tv_sec += INT32_MAX;
    return;
  }

  ts->tv_sec += (time_t)whole;
  ts->tv_nsec += (long)((seconds - whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Time left until deadline, into rel; 0 when it has passed. */
int sync_timeleft(const struct timespec *deadline, struct timespec *rel) {
  struct timespec now;

  clock_gettime(CLOCK_MONOTONIC, &now);
  rel->tv_sec = deadline->tv_sec - now.tv_sec;
  rel->tv_nsec = deadline->tv_nsec - now.tv_nsec;
  if (rel->tv_nsec < 0) {
    rel->tv_sec--;
    rel->tv_nsec += 1000000000L;
  }

  return rel->tv_sec >= 0;
}

/***
 * Monotonic clock, in seconds (fractional), for measuring intervals.
 * @function clock
 * @treturn number
 */
static int shm_clock(lua_State *L) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* ---- atomics ------------------------------------------------------------- */

/* An offset for an object of width bytes aligned to align: aligned and
 * inside the segment (segments are attached at page boundaries, so an
 * aligned offset is an aligned address). */
size_t shmL_checkaligned(lua_State *L, int arg, const Segment *s, size_t width,
                         size_t align) {
  size_t off = shmL_checkoffset(L, arg, s);

  if (off % align != 0)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "offset %I is not %d-byte aligned",
                                  (lua_Integer)off, (int)align));

  shmL_checkrange(L, arg, s, off, width);
  return off;
}

static int64_t *word64(lua_State *L, Segment *s) {
  return (int64_t *)(void *)(s->addr + shmL_checkaligned(L, 2, s, 8, 8));
}

/***
 * Load a signed 64-bit integer atomically.
 * @function segment:atomic_load
 * @tparam integer off 8-byte aligned offset
 * @treturn integer
 */
static int seg_atomic_load(lua_State *L) {
  int64_t *p = word64(L, seg_check(L, 1));

  lua_pushinteger(L, (lua_Integer)__atomic_load_n(p, __ATOMIC_SEQ_CST));
  return 1;
}

/***
 * Store a signed 64-bit integer atomically.
 * @function segment:atomic_store
 * @tparam integer off 8-byte aligned offset
 * @tparam integer v
 */
static int seg_atomic_store(lua_State *L) {
  int64_t *p = word64(L, seg_checkw(L, 1));
  int64_t v = (int64_t)shmL_checkint(L, 3);

  __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
  return 0;
}

/***
 * Add to a signed 64-bit integer atomically (wrapping around on overflow,
 * like Lua's integer arithmetic).
 * @function segment:atomic_add
 * @tparam integer off 8-byte aligned offset
 * @tparam integer n
 * @treturn integer the previous value
 */
static int seg_atomic_add(lua_State *L) {
  int64_t *p = word64(L, seg_checkw(L, 1));
  uint64_t n = (uint64_t)shmL_checkint(L, 3);

  /* unsigned arithmetic: wraps instead of undefined signed overflow */
  lua_pushinteger(L, (lua_Integer)__atomic_fetch_add((uint64_t *)(void *)p, n,
                                                     __ATOMIC_SEQ_CST));
  return 1;
}

/***
 * Compare and swap a signed 64-bit integer atomically.
 * @function segment:atomic_cas
 * @tparam integer off 8-byte aligned offset
 * @tparam integer expected
 * @tparam integer desired
 * @treturn boolean whether the swap happened
 * @treturn integer the value found (expected when it happened)
 */
static int seg_atomic_cas(lua_State *L) {
  int64_t *p = word64(L, seg_checkw(L, 1));
  int64_t expected = (int64_t)shmL_checkint(L, 3);
  int64_t desired = (int64_t)shmL_checkint(L, 4);
  int ok = __atomic_compare_exchange_n(p, &expected, desired, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);

  lua_pushboolean(L, ok);
  lua_pushinteger(L, (lua_Integer)expected);
  return 2;
}

/* ---- futex --------------------------------------------------------------- */

static long futex(uint32_t *uaddr, int op, uint32_t val,
                  const struct timespec *timeout) {
  return syscall(SYS_futex, uaddr, op, val, timeout, NULL, 0);
}

int sync_futexwake(uint32_t *word, int n) {
  return (int)futex(word, FUTEX_WAKE, (uint32_t)n, NULL);
}

/* The interpreter's signal handler (lua.c's laction) sets a hook on the
 * main thread only, to raise "interrupted!" at its next instruction.  A
 * blocking call notes the hooks of its thread and of the main thread when
 * it starts; a hook that changed since means a signal to raise.  A wait in
 * a coroutine copies the main thread's new hook onto its own thread, so
 * that it fires as soon as the waiting call returns. */
lua_State *sync_mainthread(lua_State *L) {
  lua_State *M;

  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD); /* no allocation */
  M = lua_tothread(L, -1);
  lua_pop(L, 1);
  return M != NULL ? M : L;
}

void sync_waitstart(lua_State *L, ShmWaiter *wt) {
  sync_waitinit(wt, L, sync_mainthread(L));
}

int sync_interrupted(const ShmWaiter *wt) {
  lua_State *L = wt->L, *M = wt->M;

  if (lua_gethook(L) != wt->hook)
    return 1;

  if (lua_gethook(M) != wt->mhook) {
    lua_sethook(L, lua_gethook(M), lua_gethookmask(M), lua_gethookcount(M));
    return 1;
  }

  return 0;
}

/* Wait while *word == expected, until woken, the deadline (if any) passes,
 * or the Lua interpreter has a signal to handle (sync_interrupted; then
 * returning lets it raise "interrupted!").  Other signals do not end the
 * wait.  Returns 1 when woken or the word differs, 0 on timeout, 2 for the
 * interpreter's signal, -1 with errno on failure.  Calls no Lua code. */
int sync_futexwait(const ShmWaiter *wt, uint32_t *word, uint32_t expected,
                   const struct timespec *deadline) {
  for (;;) {
    struct timespec rel;

    if (sync_interrupted(wt))
      return 2;

    if (deadline != NULL && !sync_timeleft(deadline, &rel))
      return 0;

    if (futex(word, FUTEX_WAIT, expected, deadline ? &rel : NULL) == 0)
      return 1;

    switch (errno) {
    case EAGAIN: /* the word was not `expected` */
      return 1;

    case ETIMEDOUT:
      return 0;

    case EINTR: /* resume, unless the interpreter has a signal pending */
      break;

    default:
      return -1;
    }
  }
}

/***
 * Wait on the 32-bit word at off while it equals expected (a Linux futex,
 * shared between processes).  Returns at once when the word differs
 * (compared modulo 2^32).  Spurious returns are possible: check the
 * condition again.  On little-endian machines the word at off is the low
 * half of a 64-bit counter at off, so a counter bumped with atomic_add and
 * then wake can be waited on.
 * @function segment:wait
 * @tparam integer off 4-byte aligned offset
 * @tparam integer expected
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout"
 */
static int seg_wait(lua_State *L) {
  Segment *s = seg_check(L, 1);
  uint32_t *word = (uint32_t *)(void *)(s->addr + shmL_checkaligned(L, 2, s, 4, 4));
  uint32_t expected = (uint32_t)shmL_checkint(L, 3);
  struct timespec deadline;
  double seconds;
  int timed = sync_opttimeout(L, 4, &seconds);
  ShmWaiter wt;
  int r;

  if (__atomic_load_n(word, __ATOMIC_SEQ_CST) != expected) {
    lua_pushboolean(L, 1);
    return 1;
  }

  if (timed)
    sync_deadline(&deadline, seconds);

  sync_waitstart(L, &wt);
  r = sync_futexwait(&wt, word, expected, timed ? &deadline : NULL);
  if (r < 0)
    return shmL_pusherror(L, "futex");

  lua_pushboolean(L, r != 0); /* after a signal: a spurious wake-up */
  if (r != 0)
    return 1;

  lua_pushliteral(L, "timeout");
  return 2;
}

/***
 * Wake processes waiting on the 32-bit word at off.
 * @function segment:wake
 * @tparam integer off 4-byte aligned offset
 * @tparam[opt] integer n how many at most (default: all)
 * @treturn integer how many were woken
 */
static int seg_wake(lua_State *L) {
  Segment *s = seg_check(L, 1);
  uint32_t *word = (uint32_t *)(void *)(s->addr + shmL_checkaligned(L, 2, s, 4, 4));
  lua_Integer n = shmL_optint(L, 3, INT_MAX);
  long r;

  if (n < 0)
    luaL_argerror(L, 3, "count must not be negative");

  r = futex(word, FUTEX_WAKE, (uint32_t)(n > INT_MAX ? INT_MAX : n), NULL);
  if (r < 0)
    return shmL_pusherror(L, "futex");

  lua_pushinteger(L, (lua_Integer)r);
  return 1;
}

/* ---- mutex --------------------------------------------------------------- */

/* The Lua handle of a mutex in a segment: the lock word of lock.c.  The
 * segment userdata is kept in the handle's user value, so the attachment
 * outlives the handle. */
typedef struct Mutex {
  const void *tag;  /* &mutex_tag: marks a real mutex handle */
  Segment *seg;
  lua_State *main;  /* the main thread, for sync_waitinit */
  size_t off;
  int held; /* locked by this handle: unlocked by __gc */
} Mutex;


/* As for segments (seg_test): a tag instead of a metatable lookup. */
static const char mutex_tag = 0;

static Mutex *mutex_check(lua_State *L) {
  Mutex *m = (Mutex *)lua_touserdata(L, 1);

  if (SHM_UNLIKELY(m == NULL || lua_rawlen(L, 1) != sizeof *m || m->tag != &mutex_tag))
    luaL_typeerror(L, 1, MUTEX_TNAME);

  return m;
}

/* The lock word, once every argument has been checked: nothing that can
 * run Lua code (and a finalizer that detaches) comes between this and the
 * use of the address. */
static uint64_t *mutex_word(lua_State *L, Mutex *m) {
  if (m->seg->addr == NULL)
    luaL_error(L, "attempt to use a mutex in a detached segment");

  return (uint64_t *)(void *)(m->seg->addr + m->off);
}

static void mutex_held(Mutex *m, int held) {
  m->held = held;
  m->seg->locks += held ? 1 : -1;
}

/* lock's and trylock's results. */
static int lock_result(lua_State *L, Mutex *m, int r) {
  switch (r) {
  case SHM_LOCK_OK:
  case SHM_LOCK_OWNERDIED:
    mutex_held(m, 1);
    lua_pushboolean(L, 1);
    if (r == SHM_LOCK_OK)
      return 1;
    lua_pushliteral(L, "owner died");
    return 2;

  case SHM_LOCK_DEADLK:
    errno = EDEADLK;
    return shmL_pusherror(L, "mutex lock");

  case SHM_LOCK_BUSY:
    lua_pushboolean(L, 0);
    return 1;

  default:
    lua_pushboolean(L, 0);
    lua_pushstring(L, r == SHM_LOCK_TIMEOUT ? "timeout" : "interrupted");
    return 2;
  }
}

/***
 * Lock.  A holder that died leaves the mutex to the next locker, who gets
 * a second result "owner died": the protected data may be inconsistent.
 * Ctrl-C interrupts the wait (the interpreter raises "interrupted!").
 * @function mutex:lock
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] boolean true when locked
 * @treturn[1] string "owner died" when the previous holder died holding it
 * @treturn[2] boolean false
 * @treturn[2] string "timeout"
 * @treturn[3] nil when this process holds it through another handle
 * @treturn[3] string message
 * @treturn[3] integer EDEADLK
 */
static int mutex_lock(lua_State *L) {
  Mutex *m = mutex_check(L);
  double seconds;
  int timed = sync_opttimeout(L, 2, &seconds);
  struct timespec deadline;
  ShmWaiter wt;
  uint64_t *w;

  if (m->held)
    luaL_error(L, "mutex already locked by this handle");

  w = mutex_word(L, m);
  if (timed)
    sync_deadline(&deadline, seconds);

  sync_waitinit(&wt, L, m->main);
  return lock_result(L, m, shm_lock(&wt, w, timed ? &deadline : NULL));
}

/***
 * Lock if free, without waiting.  A mutex whose holder died is taken over
 * (true, "owner died").
 * @function mutex:trylock
 * @treturn boolean true when locked, false when held (also through
 *   another handle of this process)
 * @treturn[opt] string "owner died"
 */
static int mutex_trylock(lua_State *L) {
  Mutex *m = mutex_check(L);
  int r;

  if (m->held)
    luaL_error(L, "mutex already locked by this handle");

  r = shm_trylock(mutex_word(L, m));
  return lock_result(L, m, r == SHM_LOCK_DEADLK ? SHM_LOCK_BUSY : r);
}

/***
 * Unlock.  When the lock was taken from this handle meanwhile (another
 * process judged this one dead, or re-initialised the mutex, or wrote
 * over it), the handle is released all the same and the call fails.
 * @function mutex:unlock
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer EPERM
 */
static int mutex_unlock(lua_State *L) {
  Mutex *m = mutex_check(L);
  int r;

  if (!m->held)
    luaL_error(L, "mutex not locked by this handle");

  r = shm_unlock(mutex_word(L, m));
  mutex_held(m, 0);
  if (r != SHM_LOCK_OK) {
    errno = EPERM;
    return shmL_pusherror(L, "mutex unlock (the lock was taken from this "
                             "handle)");
  }

  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Run fn(...) with the lock held and return its results.  If fn raises an
 * error the lock is released and the error raised again.  A dead previous
 * owner is not reported here: use lock() where the data must be repaired.
 * @function mutex:with
 * @tparam function fn
 * @param ... arguments for fn
 * @return what fn returns
 */
static int mutex_with(lua_State *L) {
  Mutex *m = mutex_check(L);
  ShmWaiter wt;
  int status, r;

  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (m->held)
    luaL_error(L, "mutex already locked by this handle");

  sync_waitinit(&wt, L, m->main);
  r = shm_lock(&wt, mutex_word(L, m), NULL);
  if (r == SHM_LOCK_DEADLK)
    luaL_error(L, "mutex lock: %s", strerror(EDEADLK));
  else if (r == SHM_LOCK_INTERRUPTED)
    luaL_error(L, "interrupted!");

  mutex_held(m, 1);
  status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  /* fn may have unlocked (and even detached) itself; when it did not, the
   * segment is still attached (detach is refused while held). */
  if (m->held) {
    mutex_held(m, 0);
    if (m->seg->addr != NULL)
      (void)shm_unlock((uint64_t *)(void *)(m->seg->addr + m->off));
  }
  if (status != LUA_OK)
    return lua_error(L);

  return lua_gettop(L) - 1; /* results start after the handle */
}

/***
 * Whether this handle holds the lock.
 * @function mutex:locked
 * @treturn boolean
 */
static int mutex_locked(lua_State *L) {
  Mutex *m = mutex_check(L);

  lua_pushboolean(L, m->held);
  return 1;
}

static int mutex_gc(lua_State *L) {
  Mutex *m = mutex_check(L);

  if (m->held) {
    mutex_held(m, 0);
    if (m->seg->addr != NULL)
      (void)shm_unlock((uint64_t *)(void *)(m->seg->addr + m->off));
  }

  return 0;
}

static int mutex_tostring(lua_State *L) {
  Mutex *m = mutex_check(L);

  lua_pushfstring(L, "%s (segment %d, offset %I%s)", MUTEX_TNAME, m->seg->id,
                  (lua_Integer)m->off, m->held ? ", locked" : "");
  return 1;
}

/* shm.mutex's options: unknown keys raise (shmL_checkopts); read raw, so
 * no metamethod runs. */
static int mutex_opts(lua_State *L, int arg) {
  static const char *const names[] = {"open", NULL};
  int t;

  shmL_checkopts(L, arg, names);
  if (lua_isnoneornil(L, arg))
    return 0;

  lua_pushliteral(L, "open");
  t = lua_rawget(L, arg);
  luaL_argcheck(L, t == LUA_TNIL || t == LUA_TBOOLEAN, arg,
                "option 'open' must be a boolean");
  t = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return t;
}

/***
 * A process-shared mutex at off in seg (MUTEX_SIZE bytes, aligned to
 * MUTEX_ALIGN).  Without opts.open it is initialised there, unlocked (do
 * that once, before other processes use it: a holder of the mutex it
 * replaces gets an error from unlock); with opts.open = true the one
 * already there is used.  Unknown options raise.
 * @function mutex
 * @tparam segment seg
 * @tparam integer off
 * @tparam[opt] table opts `open` (boolean)
 * @treturn mutex
 */
static int shm_mutex(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  size_t off = shmL_checkaligned(L, 2, s, SHM_LOCK_SIZE, SHM_LOCK_SIZE);
  int open = mutex_opts(L, 3);
  Mutex *m;

  m = (Mutex *)shmL_newhandle(L, sizeof *m);
  m->tag = &mutex_tag;
  m->main = sync_mainthread(L);
  m->seg = s;
  m->off = off;

  if (!open) /* the allocations above may have run a finalizer */
    shm_lockinit(mutex_word(L, m));

  return 1;
}

static const luaL_Reg mutex_meth[] = {{"lock", mutex_lock},
                                      {"trylock", mutex_trylock},
                                      {"unlock", mutex_unlock},
                                      {"with", mutex_with},
                                      {"locked", mutex_locked},
                                      {NULL, NULL}};

static const luaL_Reg mutex_metameth[] = {{"__gc", mutex_gc},
                                          {"__close", mutex_gc},
                                          {"__tostring", mutex_tostring},
                                          {NULL, NULL}};

static const luaL_Reg sync_seg_meth[] = {{"atomic_load", seg_atomic_load},
                                         {"atomic_store", seg_atomic_store},
                                         {"atomic_add", seg_atomic_add},
                                         {"atomic_cas", seg_atomic_cas},
                                         {"wait", seg_wait},
                                         {"wake", seg_wake},
                                         {NULL, NULL}};

/* With the module table at -2 and the segment metatable at -1; leaves
 * the stack as it found it. */
void sync_open(lua_State *L) {
  seg_setmethods(L, sync_seg_meth);

  lua_pushcfunction(L, shm_clock);
  lua_setfield(L, -3, "clock");

  lua_pushvalue(L, -1); /* upvalue 1: the segment metatable */
  luaL_newmetatable(L, MUTEX_TNAME); /* upvalue 2: the mutex metatable */
  luaL_setfuncs(L, mutex_metameth, 0);
  luaL_newlib(L, mutex_meth);
  lua_setfield(L, -2, "__index");
  lua_pushcclosure(L, shm_mutex, 2);
  lua_setfield(L, -3, "mutex");

  lua_pushinteger(L, SHM_LOCK_SIZE);
  lua_setfield(L, -3, "MUTEX_SIZE");
  lua_pushinteger(L, SHM_LOCK_SIZE);
  lua_setfield(L, -3, "MUTEX_ALIGN");
}
