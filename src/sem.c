/*
 * System V semaphore sets: the handle (create, open, get, values,
 * operations) and the raw mirrors semget, semop and semctl, as the table
 * `sem` of the core, which lua/sysvshm/sem.lua (`require "sysvshm.sem"`)
 * completes.
 *
 * Semaphores are numbered from 0, as offsets are (getall and setall take
 * Lua sequences: item i + 1 is semaphore i).  Misuse raises; a refusal of
 * the system returns nil, "call: strerror", errno.  A blocked operation
 * sleeps in semtimedop slices of at most SEM_SLICE_NS, so that a Ctrl-C
 * arriving just before the call is seen within one slice (sync.c's
 * ShmWaiter); other signals do not end it.
 */

/***
 * @module sysvshm.sem
 */

/***
 * Semaphore sets, in C.
 * The functions and methods of the C core; `with` is in Lua.
 * @section semaphores
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/types.h>

#include "sysvshm.h"

#define SEMSET_TNAME "sysvshm.semset"
#define DEFAULT_MODE 0600
#define SEM_SLICE_NS 100000000L /* 100 ms: the longest a Ctrl-C waits */
#define SEM_OPS_STACK 16        /* operations kept on the C stack */

/* glibc leaves union semun to the caller (semctl(2)). */
union semun {
  int val;
  struct semid_ds *buf;
  unsigned short *array;
  struct seminfo *__buf;
};

typedef struct SemSet {
  int id;
  int nsems; /* as the set had when the handle was made (it never changes) */
} SemSet;

/* How an operation ended, besides success. */
enum { SEM_OK, SEM_TIMEOUT, SEM_WOULDBLOCK, SEM_INTERRUPTED, SEM_FAILED };

/* ---- argument helpers --------------------------------------------------- */

static SemSet *sem_check(lua_State *L) {
  return (SemSet *)luaL_checkudata(L, 1, SEMSET_TNAME);
}


static int checkrange(lua_State *L, int arg, lua_Integer lo, lua_Integer hi,
                      const char *what) {
  lua_Integer v = shmL_checkint(L, arg);

  if (v < lo || v > hi)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "%s out of range (%I..%I)", what, lo, hi));

  return (int)v;
}

static int checkid(lua_State *L, int arg) {
  return checkrange(L, arg, 0, INT_MAX, "semaphore set id");
}

/* A semaphore number of the set, 0-based; def when absent (def < 0:
 * required). */
static int checknum(lua_State *L, int arg, const SemSet *s, int def) {
  lua_Integer v;

  if (def >= 0 && lua_isnoneornil(L, arg))
    return def;

  v = shmL_checkint(L, arg);
  if (v < 0 || v >= s->nsems)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "semaphore number %I out of range (0..%d)",
                                  v, s->nsems - 1));

  return (int)v;
}

/* A semaphore value, 0..USHRT_MAX (the kernel refuses more than its
 * SEMVMX, 32767 on Linux, with ERANGE). */
static unsigned short checkvalue(lua_State *L, int arg) {
  return (unsigned short)checkrange(L, arg, 0, USHRT_MAX, "semaphore value");
}




/* ---- results ------------------------------------------------------------ */

static void pushstat(lua_State *L, const struct semid_ds *ds) {
  lua_createtable(L, 0, 9);
#define SETINT(name, value)                                                    \
  (lua_pushinteger(L, (lua_Integer)(value)), lua_setfield(L, -2, name))
  SETINT("key", ds->sem_perm.__key);
  SETINT("nsems", ds->sem_nsems);
  SETINT("mode", ds->sem_perm.mode & 0777);
  SETINT("uid", ds->sem_perm.uid);
  SETINT("gid", ds->sem_perm.gid);
  SETINT("cuid", ds->sem_perm.cuid);
  SETINT("cgid", ds->sem_perm.cgid);
  SETINT("otime", ds->sem_otime);
  SETINT("ctime", ds->sem_ctime);
#undef SETINT
}

static void pushinfo(lua_State *L, const struct seminfo *si, int maxidx) {
  lua_createtable(L, 0, 11);
#define SETINT(name, value)                                                    \
  (lua_pushinteger(L, (lua_Integer)(value)), lua_setfield(L, -2, name))
  SETINT("semmap", si->semmap);
  SETINT("semmni", si->semmni);
  SETINT("semmns", si->semmns);
  SETINT("semmnu", si->semmnu);
  SETINT("semmsl", si->semmsl);
  SETINT("semopm", si->semopm);
  SETINT("semume", si->semume);
  SETINT("semusz", si->semusz);
  SETINT("semvmx", si->semvmx);
  SETINT("semaem", si->semaem);
  SETINT("maxidx", maxidx);
#undef SETINT
}

static int pushtrue(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- semctl wrappers ------------------------------------------------------ */

static int do_stat(int id, struct semid_ds *ds) {
  union semun arg;

  memset(ds, 0, sizeof *ds);
  arg.buf = ds;
  return semctl(id, 0, IPC_STAT, arg);
}

/* semctl(id, num, cmd) for GETVAL, GETPID, GETNCNT, GETZCNT. */
static int do_getint(lua_State *L, int id, int num, int cmd) {
  int r = semctl(id, num, cmd);

  if (r < 0)
    return shmL_pusherror(L, "semctl");

  lua_pushinteger(L, r);
  return 1;
}

static int do_setval(lua_State *L, int id, int num, unsigned short v) {
  union semun arg;

  arg.val = v;
  if (semctl(id, num, SETVAL, arg) != 0)
    return shmL_pusherror(L, "semctl");

  return pushtrue(L);
}

/* GETALL into a new sequence; nsems from IPC_STAT (a handle's cached
 * count is not trusted for a buffer the kernel fills). */
static int do_getall(lua_State *L, int id) {
  struct semid_ds ds;
  union semun arg;
  unsigned short *vals;
  unsigned long i, n;

  if (do_stat(id, &ds) != 0)
    return shmL_pusherror(L, "semctl");

  n = (unsigned long)ds.sem_nsems;
  vals = (unsigned short *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *vals, 0);
  arg.array = vals;
  /* a set can be replaced under the same id only after a removal, which
   * makes GETALL fail (the id's sequence number changes) */
  if (semctl(id, 0, GETALL, arg) != 0)
    return shmL_pusherror(L, "semctl");

  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, vals[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }

  return 1;
}

/* SETALL from the sequence at arg, which must have exactly nsems items. */
static int do_setall(lua_State *L, int id, int arg) {
  struct semid_ds ds;
  union semun su;
  unsigned short *vals;
  lua_Integer i, n;

  luaL_checktype(L, arg, LUA_TTABLE);
  if (do_stat(id, &ds) != 0)
    return shmL_pusherror(L, "semctl");

  n = (lua_Integer)lua_rawlen(L, arg);
  if (n != (lua_Integer)ds.sem_nsems)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "%I values for a set of %I semaphores", n,
                                  (lua_Integer)ds.sem_nsems));

  vals = (unsigned short *)lua_newuserdatauv(L, (n ? (size_t)n : 1) * sizeof *vals, 0);
  for (i = 0; i < n; i++) {
    int isnum;
    lua_Integer v;

    lua_rawgeti(L, arg, i + 1);
    v = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || v < 0 || v > USHRT_MAX)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "item %I must be an integer within 0..%d",
                                    i + 1, USHRT_MAX));
    vals[i] = (unsigned short)v;
  }

  su.array = vals;
  if (semctl(id, 0, SETALL, su) != 0)
    return shmL_pusherror(L, "semctl");

  return pushtrue(L);
}

/* IPC_SET from the table at arg: uid, gid, mode; the others keep theirs. */
static int do_set(lua_State *L, int id, int arg) {
  static const char *const names[] = {"uid", "gid", "mode", NULL};
  struct semid_ds ds;
  union semun su;
  lua_Integer v;
  uid_t uid = 0;
  gid_t gid = 0;
  int mode = 0, has_uid, has_gid, has_mode;

  luaL_checktype(L, arg, LUA_TTABLE);
  shmL_checkopts(L, arg, names);
  /* every check before the first system call */
  has_uid = shmL_optfield_int(L, arg, "uid", &v);
  if (has_uid) {
    if (v < 0 || v > (lua_Integer)UINT32_MAX - 1)
      luaL_argerror(L, arg, "uid out of range");
    uid = (uid_t)v;
  }

  has_gid = shmL_optfield_int(L, arg, "gid", &v);
  if (has_gid) {
    if (v < 0 || v > (lua_Integer)UINT32_MAX - 1)
      luaL_argerror(L, arg, "gid out of range");
    gid = (gid_t)v;
  }

  has_mode = shmL_optfield_int(L, arg, "mode", &v);
  if (has_mode)
    mode = shmL_checkmode(L, arg, v);

  if (do_stat(id, &ds) != 0)
    return shmL_pusherror(L, "semctl");

  if (has_uid)
    ds.sem_perm.uid = uid;
  if (has_gid)
    ds.sem_perm.gid = gid;
  if (has_mode)
    ds.sem_perm.mode = (unsigned short)((ds.sem_perm.mode & ~0777u) | (unsigned)mode);

  su.buf = &ds;
  if (semctl(id, 0, IPC_SET, su) != 0)
    return shmL_pusherror(L, "semctl");

  return pushtrue(L);
}

static int do_remove(lua_State *L, int id) {
  if (semctl(id, 0, IPC_RMID) != 0)
    return shmL_pusherror(L, "semctl");

  return pushtrue(L);
}

static int pushstat_of(lua_State *L, int id) {
  struct semid_ds ds;

  if (do_stat(id, &ds) != 0)
    return shmL_pusherror(L, "semctl");

  pushstat(L, &ds);
  return 1;
}

/* ---- operations ----------------------------------------------------------- */


static double elapsed_since(const struct timespec *t0) {
  struct timespec now;

  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) +
         (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Apply ops atomically, waiting at most `seconds` when timed (for ever
 * otherwise) in slices of SEM_SLICE_NS.  SEM_OK, SEM_TIMEOUT,
 * SEM_WOULDBLOCK (an operation with IPC_NOWAIT could not proceed),
 * SEM_INTERRUPTED (the interpreter has a signal to raise), or SEM_FAILED
 * with errno set.  Calls no Lua function that can raise or allocate. */
static int sem_apply(const ShmWaiter *wt, int id, struct sembuf *ops,
                     size_t n, int timed, double seconds) {
  struct timespec deadline;
  size_t i;
  int nowait_all = 1, nowait_any = 0, first;

  for (i = 0; i < n; i++) {
    int nw = (ops[i].sem_flg & IPC_NOWAIT) != 0;

    nowait_all &= nw;
    nowait_any |= nw;
  }

  /* nothing waits: one call, and EAGAIN can only mean "would block" */
  if (nowait_all) {
    for (;;) {
      if (semop(id, ops, n) == 0)
        return SEM_OK;

      if (errno == EAGAIN)
        return SEM_WOULDBLOCK;

      if (errno != EINTR)
        return SEM_FAILED;

      if (sync_interrupted(wt))
        return SEM_INTERRUPTED;
    }
  }

  if (timed)
    sync_deadline(&deadline, seconds);

  for (first = 1;; first = 0) {
    struct timespec slice, t0;

    if (sync_interrupted(wt))
      return SEM_INTERRUPTED;

    slice.tv_sec = 0;
    slice.tv_nsec = SEM_SLICE_NS;
    if (timed) {
      struct timespec rel;

      if (!sync_timeleft(&deadline, &rel)) {
        if (!first)
          return SEM_TIMEOUT;
        rel.tv_sec = 0; /* a zero timeout still tries once */
        rel.tv_nsec = 0;
      }

      if (rel.tv_sec == 0 && rel.tv_nsec < SEM_SLICE_NS)
        slice = rel;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (semtimedop(id, ops, n, &slice) == 0)
      return SEM_OK;

    switch (errno) {
    case EAGAIN: {
      /* the slice ended, or an operation with IPC_NOWAIT would have had
       * to wait: that returns at once, a timeout never does */
      double took = elapsed_since(&t0);

      if (nowait_any &&
          took < (double)slice.tv_sec + (double)slice.tv_nsec / 1e9)
        return SEM_WOULDBLOCK;

      break; /* the deadline is checked at the top */
    }

    case EINTR: /* another signal: go on, unless it was the interpreter's */
      break;

    default:
      return SEM_FAILED;
    }
  }
}

/* Push the result of sem_apply: true; false, "timeout" / "would block" /
 * "interrupted" (lua.c's hook then raises "interrupted!"); or nil, msg,
 * errno. */
static int pushresult(lua_State *L, int r, const char *call) {
  static const char *const why[] = {"ok", "timeout", "would block", "interrupted"};

  switch (r) {
  case SEM_OK:
    return pushtrue(L);

  case SEM_FAILED:
    return shmL_pusherror(L, call);

  default:
    lua_pushboolean(L, 0);
    lua_pushstring(L, why[r]);
    return 2;
  }
}

/* Read the operations at arg into ops (room for SEM_OPS_STACK) or a
 * userdata pushed for more; returns their count.  A list of {num, delta
 * [, flags]}, or one such triple ({0, -1}).  nsems < 0: numbers checked
 * only against 0..USHRT_MAX (the kernel says EFBIG past the set). */
static size_t readops(lua_State *L, int arg, int nsems, struct sembuf *stackops,
                      struct sembuf **ops) {
  lua_Integer i, n;
  int single;
  const lua_Integer maxnum = nsems < 0 ? USHRT_MAX : (lua_Integer)nsems - 1;

  luaL_checktype(L, arg, LUA_TTABLE);
  lua_rawgeti(L, arg, 1);
  single = lua_type(L, -1) == LUA_TNUMBER;
  lua_pop(L, 1);
  n = single ? 1 : (lua_Integer)lua_rawlen(L, arg);
  if (n < 1)
    luaL_argerror(L, arg, "no operations (a list of {num, delta [, flags]})");

  if (n > 0xffff) /* nsops is an unsigned int; the kernel's limit is lower */
    luaL_argerror(L, arg, "too many operations");

  *ops = stackops;
  if (n > SEM_OPS_STACK)
    *ops = (struct sembuf *)lua_newuserdatauv(L, (size_t)n * sizeof **ops, 0);

  for (i = 0; i < n; i++) {
    lua_Integer v[3];
    int k;

    if (single) {
      lua_pushvalue(L, arg);
    } else if (lua_rawgeti(L, arg, i + 1) != LUA_TTABLE) {
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "operation %I must be a table {num, delta [, flags]}",
                                    i + 1));
    }

    for (k = 0; k < 3; k++) {
      int isnum, t = lua_rawgeti(L, -1, k + 1);

      v[k] = lua_tointegerx(L, -1, &isnum);
      lua_pop(L, 1);
      if (k == 2 && t == LUA_TNIL) {
        v[k] = 0;
        continue;
      }

      if (t != LUA_TNUMBER || !isnum)
        luaL_argerror(L, arg,
                      lua_pushfstring(L, "operation %I: %s must be an integer", i + 1,
                                      k == 0 ? "num" : k == 1 ? "delta" : "flags"));
    }

    if (lua_rawlen(L, -1) > 3)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "operation %I has more than {num, delta, flags}", i + 1));

    lua_pop(L, 1);
    if (v[0] < 0 || v[0] > maxnum)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "operation %I: semaphore number %I out of range (0..%I)",
                                    i + 1, v[0], maxnum));

    if (v[1] < SHRT_MIN || v[1] > SHRT_MAX)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "operation %I: delta %I out of range (%d..%d)",
                                    i + 1, v[1], SHRT_MIN, SHRT_MAX));

    if ((v[2] & ~(lua_Integer)(IPC_NOWAIT | SEM_UNDO)) != 0)
      luaL_argerror(L, arg,
                    lua_pushfstring(L, "operation %I: flags may only be IPC_NOWAIT and SEM_UNDO",
                                    i + 1));

    (*ops)[i].sem_num = (unsigned short)v[0];
    (*ops)[i].sem_op = (short)v[1];
    (*ops)[i].sem_flg = (short)v[2];
  }

  return (size_t)n;
}

/* The body of semop and s:op: ops at arg, the timeout at arg + 1. */
static int do_op(lua_State *L, int id, int nsems, int arg) {
  struct sembuf stackops[SEM_OPS_STACK], *ops;
  size_t n = readops(L, arg, nsems, stackops, &ops);
  double seconds = 0;
  int timed = sync_opttimeout(L, arg + 1, &seconds);
  ShmWaiter wt;

  sync_waitstart(L, &wt);
  return pushresult(L, sem_apply(&wt, id, ops, n, timed, seconds), "semtimedop");
}

/* One operation of a handle's convenience calls. */
static int do_one(lua_State *L, const SemSet *s, int num, int delta, int flags,
                  int targ) {
  struct sembuf op;
  double seconds = 0;
  int timed = targ > 0 ? sync_opttimeout(L, targ, &seconds) : 0;
  ShmWaiter wt;

  op.sem_num = (unsigned short)num;
  op.sem_op = (short)delta;
  op.sem_flg = (short)flags;
  sync_waitstart(L, &wt);
  return pushresult(L, sem_apply(&wt, s->id, &op, 1, timed, seconds), "semtimedop");
}

/* ---- handles -------------------------------------------------------------- */

/* Push a handle, not yet valid (id -1), before any system call, so that
 * no memory error can come after one. */
static SemSet *newhandle(lua_State *L) {
  SemSet *s = (SemSet *)lua_newuserdatauv(L, sizeof *s, 0);

  s->id = -1;
  s->nsems = 0;
  luaL_setmetatable(L, SEMSET_TNAME);
  return s;
}

/* Push a handle for id (nsems from IPC_STAT), or nil, msg, errno. */
static int pushhandle(lua_State *L, int id) {
  SemSet *s = newhandle(L);
  struct semid_ds ds;

  if (do_stat(id, &ds) != 0)
    return shmL_pusherror(L, "semctl");

  s->id = id;
  s->nsems = (int)ds.sem_nsems;
  return 1;
}

/***
 * Create a semaphore set, every value 0 unless `opts.value`.
 * @function create
 * @tparam integer key a key (from ftok) or IPC_PRIVATE
 * @tparam integer nsems how many semaphores, at least 1 (the kernel's
 *   limit, SEMMSL, is 32000 on Linux)
 * @tparam[opt] table opts `mode` (permission bits, default 0600),
 *   `exclusive` (default true: fail with EEXIST if the key is taken; false:
 *   the existing set of that key, which must have at least nsems
 *   semaphores), `value` (every semaphore's first value; set only by the
 *   process that created the set, so `exclusive = false, value = 1` makes
 *   one mutex for all who race to create it)
 * @treturn[1] semset
 * @treturn[1] boolean whether this call created it
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 * @usage local s = assert(sem.create(sem.IPC_PRIVATE, 1, { value = 1 }))
 */
static int semf_create(lua_State *L) {
  static const char *const names[] = {"mode", "exclusive", "value", NULL};
  key_t key = shmL_checkkey(L, 1);
  int nsems = checkrange(L, 2, 1, INT_MAX, "number of semaphores");
  lua_Integer mode = DEFAULT_MODE, value = 0;
  int exclusive, hasvalue, id, created = 1;
  SemSet *s;

  shmL_checkopts(L, 3, names);
  if (shmL_optfield_int(L, 3, "mode", &mode))
    (void)shmL_checkmode(L, 3, mode);

  exclusive = shmL_optfield_bool(L, 3, "exclusive", 1);
  hasvalue = shmL_optfield_int(L, 3, "value", &value);
  if (hasvalue && (value < 0 || value > USHRT_MAX))
    luaL_argerror(L, 3, "option 'value' out of range (0..65535)");

  s = newhandle(L);
  id = semget(key, nsems, IPC_CREAT | IPC_EXCL | (int)mode);
  if (id < 0 && errno == EEXIST && !exclusive) {
    struct semid_ds ds;

    created = 0;
    id = semget(key, nsems, 0);
    if (id >= 0) {
      if (do_stat(id, &ds) != 0)
        return shmL_pusherror(L, "semctl");

      nsems = (int)ds.sem_nsems;
    }
  }

  if (id < 0)
    return shmL_pusherror(L, "semget");

  if (created && hasvalue) {
    union semun su;
    int i;

    /* one SETVAL each, so no buffer to allocate while the set exists
     * unowned; nobody operates on a set so new (its otime is 0) */
    su.val = (int)value;
    for (i = 0; i < nsems; i++) {
      if (semctl(id, i, SETVAL, su) != 0) {
        int en = errno;

        (void)semctl(id, 0, IPC_RMID); /* ours, and useless: no leak */
        errno = en;
        return shmL_pusherror(L, "semctl");
      }
    }
  }

  s->id = id;
  s->nsems = nsems;
  lua_pushboolean(L, created);
  return 2;
}

/***
 * The semaphore set of a key.
 * @function open
 * @tparam integer key
 * @treturn[1] semset
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno (ENOENT when there is none)
 */
static int semf_open(lua_State *L) {
  int id = semget(shmL_checkkey(L, 1), 0, 0);

  if (id < 0)
    return shmL_pusherror(L, "semget");

  return pushhandle(L, id);
}

/***
 * A handle for the set with this id (checked with IPC_STAT, which needs
 * read permission).
 * @function get
 * @tparam integer id
 * @treturn[1] semset
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno (EINVAL when there is none)
 */
static int semf_get(lua_State *L) {
  return pushhandle(L, checkid(L, 1));
}

/***
 * semget(2), as it is.
 * @function semget
 * @tparam integer key
 * @tparam integer nsems (0 to open an existing set)
 * @tparam integer flags IPC_CREAT, IPC_EXCL and permission bits
 * @treturn[1] integer id
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int semf_semget(lua_State *L) {
  key_t key = shmL_checkkey(L, 1);
  int nsems = checkrange(L, 2, 0, INT_MAX, "number of semaphores");
  int flags = checkrange(L, 3, INT_MIN, INT_MAX, "flags");
  int id = semget(key, nsems, flags);

  if (id < 0)
    return shmL_pusherror(L, "semget");

  lua_pushinteger(L, id);
  return 1;
}

/***
 * semop(2) and semtimedop(2): apply operations atomically, all or none.
 * Blocks (Ctrl-C interrupts it) unless every operation has IPC_NOWAIT.
 * @function semop
 * @tparam integer id
 * @tparam table ops a list of `{num, delta [, flags]}` (or one of them):
 *   num the semaphore (0-based), delta > 0 adds, < 0 waits until it can
 *   subtract, 0 waits for zero; flags `IPC_NOWAIT`, `SEM_UNDO` (or both)
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout", "would block" (IPC_NOWAIT) or
 *   "interrupted" (Ctrl-C: the interpreter raises at once)
 * @treturn[3] nil
 * @treturn[3] string message
 * @treturn[3] integer errno
 * @see semop(2)
 */
static int semf_semop(lua_State *L) {
  return do_op(L, checkid(L, 1), -1, 2);
}

/***
 * semctl(2).  GETVAL, GETPID, GETNCNT, GETZCNT return an integer; GETALL a
 * sequence (item i + 1 is semaphore i); IPC_STAT a stat table (as
 * `semset:stat`); SEM_STAT and SEM_STAT_ANY (id is a kernel index, as
 * `ipcs` walks them) a stat table with the set's `id`; IPC_INFO and
 * SEM_INFO the `seminfo` fields and `maxidx`; SETVAL (arg: the value),
 * SETALL (arg: a sequence of nsems values), IPC_SET (arg: a table of uid,
 * gid, mode) and IPC_RMID return true.  An arg given to another command
 * raises.
 * @function semctl
 * @tparam integer id
 * @tparam integer num the semaphore (0-based; ignored by whole-set commands)
 * @tparam integer cmd
 * @param[opt] arg
 * @treturn[1] integer|table|true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 * @see semctl(2)
 */
static int semf_semctl(lua_State *L) {
  int id = checkrange(L, 1, 0, INT_MAX, "id");
  int num = checkrange(L, 2, 0, INT_MAX, "semaphore number");
  int cmd = checkrange(L, 3, INT_MIN, INT_MAX, "command");
  int takes = cmd == SETVAL || cmd == SETALL || cmd == IPC_SET;

  if (!takes && !lua_isnone(L, 4))
    luaL_argerror(L, 4, "only SETVAL, SETALL and IPC_SET take an argument");

  switch (cmd) {
  case GETVAL:
  case GETPID:
  case GETNCNT:
  case GETZCNT:
    return do_getint(L, id, num, cmd);

  case SETVAL:
    return do_setval(L, id, num, checkvalue(L, 4));

  case GETALL:
    return do_getall(L, id);

  case SETALL:
    return do_setall(L, id, 4);

  case IPC_STAT:
    return pushstat_of(L, id);

  case IPC_SET:
    return do_set(L, id, 4);

  case IPC_RMID:
    return do_remove(L, id);

  case SEM_STAT:
#ifdef SEM_STAT_ANY
  case SEM_STAT_ANY:
#endif
  {
    struct semid_ds ds;
    union semun su;
    int r;

    memset(&ds, 0, sizeof ds);
    su.buf = &ds;
    r = semctl(id, 0, cmd, su);
    if (r < 0)
      return shmL_pusherror(L, "semctl");

    pushstat(L, &ds);
    lua_pushinteger(L, r);
    lua_setfield(L, -2, "id");
    return 1;
  }

  case IPC_INFO:
  case SEM_INFO: {
    struct seminfo si;
    union semun su;
    int r;

    memset(&si, 0, sizeof si);
    su.__buf = &si;
    r = semctl(0, 0, cmd, su);
    if (r < 0)
      return shmL_pusherror(L, "semctl");

    pushinfo(L, &si, r);
    return 1;
  }

  default:
    return luaL_argerror(L, 3,
                         "unsupported command (GETVAL, SETVAL, GETALL, SETALL, "
                         "GETPID, GETNCNT, GETZCNT, IPC_STAT, IPC_SET, IPC_RMID, "
                         "SEM_STAT, SEM_STAT_ANY, IPC_INFO or SEM_INFO)");
  }
}

/***
 * Every semaphore set visible to the caller (as `ipcs -s` lists them),
 * each a stat table plus `id`, in the kernel's order.
 * @function list
 * @treturn[1] table an array of stat tables
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int semf_list(lua_State *L) {
  struct seminfo si;
  struct semid_ds ds;
  union semun su;
  int maxidx, i, n = 0;

  su.__buf = &si;
  maxidx = semctl(0, 0, SEM_INFO, su);
  if (maxidx < 0)
    return shmL_pusherror(L, "semctl");

  lua_newtable(L);
  for (i = 0; i <= maxidx; i++) {
    int id;

    memset(&ds, 0, sizeof ds);
    su.buf = &ds;
#ifdef SEM_STAT_ANY
    id = semctl(i, 0, SEM_STAT_ANY, su); /* Linux 4.17: no read check */
    if (id < 0 && errno == EINVAL)
      id = semctl(i, 0, SEM_STAT, su);
#else
    id = semctl(i, 0, SEM_STAT, su);
#endif

    if (id < 0) /* a free index, or one we may not see */
      continue;

    pushstat(L, &ds);
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "id");
    lua_rawseti(L, -2, ++n);
  }

  return 1;
}

/***
 * What x is: "semset", or nil.
 * @function type
 * @param x any value
 * @treturn string|nil
 */
static int semf_type(lua_State *L) {
  luaL_checkany(L, 1);
  if (luaL_testudata(L, 1, SEMSET_TNAME) != NULL)
    lua_pushliteral(L, "semset");
  else
    luaL_pushfail(L);

  return 1;
}

/* ---- methods -------------------------------------------------------------- */

/***
 * A semaphore set handle (`sem.create`, `sem.open`, `sem.get`): fields
 * `id` and `nsems`, and the methods below.  A handle holds nothing: it
 * needs no closing, and the set outlives it (`remove` it).
 * @type semset
 */

/***
 * Remove the set (IPC_RMID).  Processes waiting on it wake with EIDRM.
 * @function semset:remove
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_remove(lua_State *L) {
  return do_remove(L, sem_check(L)->id);
}

/***
 * The set's status (IPC_STAT).
 * @function semset:stat
 * @treturn[1] table key, nsems, mode (permission bits), uid, gid, cuid,
 *   cgid, otime (last semop, 0 if none), ctime (integers)
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_stat(lua_State *L) {
  return pushstat_of(L, sem_check(L)->id);
}

/***
 * Change owner and permissions (IPC_SET); fields left out keep their
 * values, unknown ones raise.
 * @function semset:set
 * @tparam table t `uid`, `gid`, `mode`
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_set(lua_State *L) {
  return do_set(L, sem_check(L)->id, 2);
}

/***
 * A semaphore's value (GETVAL).
 * @function semset:getval
 * @tparam[opt=0] integer num the semaphore, 0-based
 * @treturn[1] integer
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_getval(lua_State *L) {
  SemSet *s = sem_check(L);

  return do_getint(L, s->id, checknum(L, 2, s, 0), GETVAL);
}

/***
 * Set a semaphore's value (SETVAL); clears every process's undo
 * adjustment for it, and wakes who can proceed.
 * @function semset:setval
 * @tparam integer num the semaphore, 0-based
 * @tparam integer v 0..32767 (SEMVMX; more: nil, message, ERANGE)
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_setval(lua_State *L) {
  SemSet *s = sem_check(L);
  int num = checknum(L, 2, s, -1);

  return do_setval(L, s->id, num, checkvalue(L, 3));
}

/***
 * Every value (GETALL): a sequence, item i + 1 for semaphore i.
 * @function semset:getall
 * @treturn[1] table
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_getall(lua_State *L) {
  return do_getall(L, sem_check(L)->id);
}

/***
 * Set every value (SETALL) from a sequence of exactly nsems integers.
 * @function semset:setall
 * @tparam table t
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_setall(lua_State *L) {
  return do_setall(L, sem_check(L)->id, 2);
}

/***
 * The pid of the last process to operate on a semaphore (GETPID; 0 if
 * none yet).
 * @function semset:getpid
 * @tparam[opt=0] integer num
 * @treturn[1] integer
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_getpid(lua_State *L) {
  SemSet *s = sem_check(L);

  return do_getint(L, s->id, checknum(L, 2, s, 0), GETPID);
}

/***
 * How many processes wait for a semaphore to grow (GETNCNT).
 * @function semset:getncnt
 * @tparam[opt=0] integer num
 * @treturn[1] integer
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_getncnt(lua_State *L) {
  SemSet *s = sem_check(L);

  return do_getint(L, s->id, checknum(L, 2, s, 0), GETNCNT);
}

/***
 * How many processes wait for a semaphore to be zero (GETZCNT).
 * @function semset:getzcnt
 * @tparam[opt=0] integer num
 * @treturn[1] integer
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int sem_getzcnt(lua_State *L) {
  SemSet *s = sem_check(L);

  return do_getint(L, s->id, checknum(L, 2, s, 0), GETZCNT);
}

/***
 * Apply operations atomically (semtimedop): as `sem.semop`, with semaphore
 * numbers checked against the set.
 * @function semset:op
 * @tparam table ops a list of `{num, delta [, flags]}`, or one of them
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout", "would block" or "interrupted"
 * @treturn[3] nil
 * @treturn[3] string message
 * @treturn[3] integer errno
 * @usage s:op({ {0, -1, sem.SEM_UNDO}, {1, 1} })  -- take 0 and give 1, at once
 */
static int sem_op(lua_State *L) {
  SemSet *s = sem_check(L);

  return do_op(L, s->id, s->nsems, 2);
}

/***
 * Take delta from a semaphore, waiting until it can (P), with SEM_UNDO:
 * if this process dies before `release`, the kernel gives it back.
 * @function semset:acquire
 * @tparam[opt=0] integer num
 * @tparam[opt] number timeout seconds (default: for ever; 0: only if free)
 * @tparam[opt=1] integer delta 1..32767
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout" or "interrupted"
 * @treturn[3] nil
 * @treturn[3] string message
 * @treturn[3] integer errno (EIDRM: the set was removed)
 */
static int sem_acquire(lua_State *L) {
  SemSet *s = sem_check(L);
  int num = checknum(L, 2, s, 0);
  int delta = lua_isnoneornil(L, 4) ? 1 : checkrange(L, 4, 1, SHRT_MAX, "delta");

  return do_one(L, s, num, -delta, SEM_UNDO, 3);
}

/***
 * Give delta back to a semaphore (V), with SEM_UNDO (balancing `acquire`'s
 * adjustment).  Never waits.
 * @function semset:release
 * @tparam[opt=0] integer num
 * @tparam[opt=1] integer delta 1..32767
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno (ERANGE past SEMVMX)
 */
static int sem_release(lua_State *L) {
  SemSet *s = sem_check(L);
  int num = checknum(L, 2, s, 0);
  int delta = lua_isnoneornil(L, 3) ? 1 : checkrange(L, 3, 1, SHRT_MAX, "delta");

  return do_one(L, s, num, delta, SEM_UNDO, 0);
}

/***
 * Wait until a semaphore is zero.
 * @function semset:wait_zero
 * @tparam[opt=0] integer num
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout" or "interrupted"
 * @treturn[3] nil
 * @treturn[3] string message
 * @treturn[3] integer errno
 */
static int sem_wait_zero(lua_State *L) {
  SemSet *s = sem_check(L);

  return do_one(L, s, checknum(L, 2, s, 0), 0, 0, 3);
}

static int sem_tostring(lua_State *L) {
  SemSet *s = sem_check(L);

  lua_pushfstring(L, "%s (id %d, %d semaphore%s)", SEMSET_TNAME, s->id, s->nsems,
                  s->nsems == 1 ? "" : "s");
  return 1;
}

static int sem_eq(lua_State *L) {
  SemSet *a = (SemSet *)luaL_testudata(L, 1, SEMSET_TNAME);
  SemSet *b = (SemSet *)luaL_testudata(L, 2, SEMSET_TNAME);

  lua_pushboolean(L, a != NULL && b != NULL && a->id == b->id);
  return 1;
}

/* __index: the fields id and nsems, then the methods (upvalue 1). */
static int sem_index(lua_State *L) {
  SemSet *s = sem_check(L);

  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *k = lua_tostring(L, 2);

    if (strcmp(k, "id") == 0) {
      lua_pushinteger(L, s->id);
      return 1;
    }

    if (strcmp(k, "nsems") == 0) {
      lua_pushinteger(L, s->nsems);
      return 1;
    }
  }

  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static const luaL_Reg sem_meth[] = {
    {"remove", sem_remove},   {"stat", sem_stat},       {"set", sem_set},
    {"getval", sem_getval},   {"setval", sem_setval},   {"getall", sem_getall},
    {"setall", sem_setall},   {"getpid", sem_getpid},   {"getncnt", sem_getncnt},
    {"getzcnt", sem_getzcnt}, {"op", sem_op},           {"acquire", sem_acquire},
    {"release", sem_release}, {"wait_zero", sem_wait_zero},
    {NULL, NULL}};

static const luaL_Reg semf_funcs[] = {
    {"create", semf_create}, {"open", semf_open},     {"get", semf_get},
    {"semget", semf_semget}, {"semop", semf_semop},   {"semctl", semf_semctl},
    {"list", semf_list},     {"type", semf_type},     {NULL, NULL}};

static void setconstants(lua_State *L) {
#define CONST(c) (lua_pushinteger(L, (lua_Integer)(c)), lua_setfield(L, -2, #c))
  CONST(IPC_PRIVATE);
  CONST(IPC_CREAT);
  CONST(IPC_EXCL);
  CONST(IPC_NOWAIT);
  CONST(IPC_RMID);
  CONST(IPC_SET);
  CONST(IPC_STAT);
  CONST(IPC_INFO);
  CONST(SEM_UNDO);
  CONST(GETVAL);
  CONST(SETVAL);
  CONST(GETALL);
  CONST(SETALL);
  CONST(GETPID);
  CONST(GETNCNT);
  CONST(GETZCNT);
  CONST(SEM_STAT);
#ifdef SEM_STAT_ANY
  CONST(SEM_STAT_ANY);
#endif
  CONST(SEM_INFO);
  CONST(EACCES);
  CONST(EAGAIN);
  CONST(EEXIST);
  CONST(EFBIG);
  CONST(EIDRM);
  CONST(EINVAL);
  CONST(ENOENT);
  CONST(ENOSPC);
  CONST(EPERM);
  CONST(ERANGE);
#undef CONST
}

/* With the module table at -2 (and the segment metatable at -1): sets the
 * module's field `sem`; leaves the stack as it found it. */
void sem_open_module(lua_State *L) {
  luaL_newlib(L, semf_funcs);
  setconstants(L);
  luaL_newmetatable(L, SEMSET_TNAME);
  luaL_newlib(L, sem_meth);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "_methods"); /* for sem.lua, which adds `with` */
  lua_pushcclosure(L, sem_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, sem_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, sem_eq);
  lua_setfield(L, -2, "__eq");
  lua_pop(L, 1);
  lua_setfield(L, -3, "sem");
}
