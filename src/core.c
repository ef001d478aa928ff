/*
 * sysvshm.core: the module functions.  Thin wrappers over shmget, shmat,
 * shmdt, shmctl and ftok, plus the friendlier create/open/attach/stat/remove.
 *
 * Conventions: misuse (wrong types, out-of-range numbers, unknown options)
 * raises an error; a refusal of the system returns nil, "call: strerror",
 * errno.
 */

/***
 * @module sysvshm
 */

/***
 * Module functions.
 * Create, find, attach, inspect and remove segments (also `sysvshm.core`).
 * @section functions
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/types.h>
#include <time.h>

#include "sysvshm.h"

#define DEFAULT_MODE 0600

/* ---- argument helpers --------------------------------------------------- */

/* (keys: shmL_checkkey, segment.c) */
static int checkid(lua_State *L, int arg) {
  lua_Integer v = shmL_checkint(L, arg);

  if (v < 0 || v > INT_MAX)
    luaL_argerror(L, arg, "segment id out of range");

  return (int)v;
}

static int checkcint(lua_State *L, int arg, const char *what) {
  lua_Integer v = shmL_checkint(L, arg);

  if (v < INT_MIN || v > INT_MAX)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s out of range", what));

  return (int)v;
}

static size_t checksize(lua_State *L, int arg) {
  lua_Integer v = shmL_checkint(L, arg);

  if (v < 0)
    luaL_argerror(L, arg, "size must not be negative");

  return (size_t)v;
}




static void pushstat(lua_State *L, const struct shmid_ds *ds) {
  lua_createtable(L, 0, 15);
#define SETINT(name, value)                                                    \
  (lua_pushinteger(L, (lua_Integer)(value)), lua_setfield(L, -2, name))
  SETINT("key", ds->shm_perm.__key);
  SETINT("size", ds->shm_segsz);
  SETINT("mode", ds->shm_perm.mode & 0777);
  SETINT("uid", ds->shm_perm.uid);
  SETINT("gid", ds->shm_perm.gid);
  SETINT("cuid", ds->shm_perm.cuid);
  SETINT("cgid", ds->shm_perm.cgid);
  SETINT("cpid", ds->shm_cpid);
  SETINT("lpid", ds->shm_lpid);
  SETINT("nattch", ds->shm_nattch);
  SETINT("atime", ds->shm_atime);
  SETINT("dtime", ds->shm_dtime);
  SETINT("ctime", ds->shm_ctime);
#undef SETINT
  lua_pushboolean(L, (ds->shm_perm.mode & SHM_DEST) != 0);
  lua_setfield(L, -2, "removed");
  lua_pushboolean(L, (ds->shm_perm.mode & SHM_LOCKED) != 0);
  lua_setfield(L, -2, "locked");
}

/* ---- shared implementations --------------------------------------------- */

static int do_shmget(lua_State *L, key_t key, size_t size, int flags) {
  int id = shmget(key, size, flags);

  if (id < 0)
    return shmL_pusherror(L, "shmget");

  lua_pushinteger(L, id);
  return 1;
}

/* Push a new segment attached to id; the userdata exists before shmat so a
 * memory error can never leak an attachment. */
static int do_shmat(lua_State *L, int id, int flags) {
  Segment *s = seg_new(L);
  struct shmid_ds ds;
  void *addr = shmat(id, NULL, flags);

  if (addr == (void *)-1)
    return shmL_pusherror(L, "shmat");

  s->addr = (unsigned char *)addr;
  s->id = id;
  s->readonly = (flags & SHM_RDONLY) != 0;
  if (shmctl(id, IPC_STAT, &ds) != 0) {
    int en = errno;

    (void)seg_detach(s);
    errno = en;
    return shmL_pusherror(L, "shmctl");
  }

  s->size = ds.shm_segsz;
  return 1;
}

static int do_stat(lua_State *L, int id) {
  struct shmid_ds ds;

  if (shmctl(id, IPC_STAT, &ds) != 0)
    return shmL_pusherror(L, "shmctl");

  pushstat(L, &ds);
  return 1;
}

static int do_remove(lua_State *L, int id) {
  if (shmctl(id, IPC_RMID, NULL) != 0)
    return shmL_pusherror(L, "shmctl");

  lua_pushboolean(L, 1);
  return 1;
}

/* ---- module functions ----------------------------------------------------- */

/***
 * Make a System V key from a path and a project id, as ftok(3).
 * @function ftok
 * @tparam string path an existing file
 * @tparam integer|string proj an integer (only its low 8 bits count) or a
 *   one-character string: `ftok(d, "A") == ftok(d, 65)`
 * @treturn[1] integer key
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 * @see ftok(3)
 */
static int shm_ftok(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int proj;
  key_t key;

  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t n;
    const char *p = lua_tolstring(L, 2, &n);

    if (n != 1)
      luaL_argerror(L, 2, "project id string must have exactly one character");

    proj = (unsigned char)p[0];
  } else {
    proj = checkcint(L, 2, "project id");
  }

  key = ftok(path, proj);
  if (key == (key_t)-1)
    return shmL_pusherror(L, "ftok");

  lua_pushinteger(L, key);
  return 1;
}

/***
 * Create a segment.
 * @function create
 * @tparam integer key a key (from ftok) or IPC_PRIVATE
 * @tparam integer size in bytes
 * @tparam[opt] table opts `mode` (permission bits, default 0600),
 *   `exclusive` (default true: fail with EEXIST if the key is taken; false:
 *   return the existing segment's id)
 * @treturn[1] integer id
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 * @usage local id = assert(shm.create(shm.IPC_PRIVATE, 4096))
 */
static int shm_create(lua_State *L) {
  static const char *const names[] = {"mode", "exclusive", NULL};
  key_t key = shmL_checkkey(L, 1);
  size_t size = checksize(L, 2);
  lua_Integer mode = DEFAULT_MODE;
  int flags = IPC_CREAT;

  shmL_checkopts(L, 3, names);
  if (shmL_optfield_int(L, 3, "mode", &mode))
    (void)shmL_checkmode(L, 3, mode);

  if (shmL_optfield_bool(L, 3, "exclusive", 1))
    flags |= IPC_EXCL;

  return do_shmget(L, key, size, flags | (int)mode);
}

/***
 * A new private segment, attached and already marked for removal
 * (IPC_RMID right after shmat), so that it cannot outlive its users: it
 * goes when the last process detaches or dies, whatever happens.  On Linux
 * other processes can still attach it by id while it is attached somewhere
 * (pass them the id; they need the permission bits of `mode`); once every
 * attachment is gone, it is gone, and attaching the id fails (EINVAL or
 * EIDRM).  Elsewhere a removed segment cannot be attached at all.  The
 * only window left is the few microseconds between shmget and shmctl
 * inside this call: a SIGKILL there would leave the segment behind.
 * @function private
 * @tparam integer size in bytes
 * @tparam[opt] table opts `mode` (permission bits, default 0600)
 * @treturn[1] segment
 * @treturn[1] integer its id
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 * @usage local seg <close>, id = assert(shm.private(4096))
 */
static int shm_private(lua_State *L) {
  static const char *const names[] = {"mode", NULL};
  size_t size = checksize(L, 1);
  lua_Integer mode = DEFAULT_MODE;
  struct shmid_ds ds;
  Segment *s;
  void *addr;
  int id;

  shmL_checkopts(L, 2, names);
  if (shmL_optfield_int(L, 2, "mode", &mode))
    (void)shmL_checkmode(L, 2, mode);

  s = seg_new(L); /* before the segment exists: no memory error after it */
  id = shmget(IPC_PRIVATE, size, IPC_CREAT | IPC_EXCL | (int)mode);
  if (id < 0)
    return shmL_pusherror(L, "shmget");

  addr = shmat(id, NULL, 0);
  if (addr == (void *)-1) {
    int en = errno;

    (void)shmctl(id, IPC_RMID, NULL);
    errno = en;
    return shmL_pusherror(L, "shmat");
  }

  s->addr = (unsigned char *)addr;
  s->id = id;
  if (shmctl(id, IPC_STAT, &ds) != 0 || shmctl(id, IPC_RMID, NULL) != 0) {
    int en = errno;

    (void)shmctl(id, IPC_RMID, NULL);
    (void)seg_detach(s);
    errno = en;
    return shmL_pusherror(L, "shmctl");
  }

  s->size = ds.shm_segsz;
  lua_pushinteger(L, id);
  return 2;
}

/***
 * The id of an existing segment.
 * @function open
 * @tparam integer key
 * @treturn[1] integer id
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno (ENOENT when there is none)
 */
static int shm_open(lua_State *L) {
  return do_shmget(L, shmL_checkkey(L, 1), 0, 0);
}

/***
 * Attach a segment.
 * @function attach
 * @tparam integer id
 * @tparam[opt] table opts `readonly` (boolean)
 * @treturn[1] segment
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 * @usage local seg <close> = assert(shm.attach(id))
 */
static int shm_attach(lua_State *L) {
  static const char *const names[] = {"readonly", NULL};
  int id = checkid(L, 1);

  shmL_checkopts(L, 2, names);
  return do_shmat(L, id, shmL_optfield_bool(L, 2, "readonly", 0) ? SHM_RDONLY : 0);
}

/***
 * A segment's status (IPC_STAT).
 * @function stat
 * @tparam integer id
 * @treturn[1] table key, size, mode (permission bits), uid, gid, cuid, cgid,
 *   cpid, lpid, nattch, atime, dtime, ctime (integers), removed (marked for
 *   removal), locked (booleans)
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_stat(lua_State *L) {
  return do_stat(L, checkid(L, 1));
}

/***
 * Mark a segment for removal (IPC_RMID).  It goes once the last process
 * detaches; attachments keep working until then.
 * @function remove
 * @tparam integer id
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_remove(lua_State *L) {
  return do_remove(L, checkid(L, 1));
}

/***
 * shmget(2), as it is.
 * @function shmget
 * @tparam integer key
 * @tparam integer size
 * @tparam integer flags IPC_CREAT, IPC_EXCL and permission bits
 * @treturn[1] integer id
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_shmget(lua_State *L) {
  key_t key = shmL_checkkey(L, 1);
  size_t size = checksize(L, 2);

  return do_shmget(L, key, size, checkcint(L, 3, "flags"));
}

/***
 * shmat(2), at an address the system chooses.
 * @function shmat
 * @tparam integer id
 * @tparam[opt=0] integer flags SHM_RDONLY
 * @treturn[1] segment
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_shmat(lua_State *L) {
  int id = checkid(L, 1);

  if (lua_isnoneornil(L, 2))
    return do_shmat(L, id, 0);

  return do_shmat(L, id, checkcint(L, 2, "flags"));
}

/***
 * shmdt(2): detach.  Unlike `segment:detach`, a detached segment is refused
 * as C refuses it (nil, message, EINVAL).
 * @function shmdt
 * @tparam segment seg
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_shmdt(lua_State *L) {
  Segment *s = seg_checkany(L, 1);

  if (s->addr == NULL) {
    errno = EINVAL;
    return shmL_pusherror(L, "shmdt");
  }

  return seg_pushdetach(L, s);
}

/***
 * shmctl(2) with IPC_STAT (returns the stat table), IPC_SET (with a table of
 * uid, gid and mode; fields left out keep their values), IPC_RMID,
 * SHM_LOCK or SHM_UNLOCK (return true).
 * @function shmctl
 * @tparam integer id
 * @tparam integer cmd
 * @tparam[opt] table t for IPC_SET, and only there: `uid`, `gid`, `mode`
 *   (any other key, or a table given with another command, raises)
 * @treturn[1] table|true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_shmctl(lua_State *L) {
  static const char *const names[] = {"uid", "gid", "mode", NULL};
  int id = checkid(L, 1);
  int cmd = checkcint(L, 2, "command");
  struct shmid_ds ds;
  lua_Integer v;

  /* a table given to another command would be ignored: refuse it, as an
   * unknown option is refused */
  if (cmd != IPC_SET && !lua_isnoneornil(L, 3))
    luaL_argerror(L, 3, "only IPC_SET takes a table of options");

  switch (cmd) {
  case IPC_STAT:
    return do_stat(L, id);

  case IPC_RMID:
    return do_remove(L, id);

  case SHM_LOCK:
  case SHM_UNLOCK:
    if (shmctl(id, cmd, NULL) != 0)
      return shmL_pusherror(L, "shmctl");

    lua_pushboolean(L, 1);
    return 1;

  case IPC_SET:
    luaL_checktype(L, 3, LUA_TTABLE);
    shmL_checkopts(L, 3, names);
    memset(&ds, 0, sizeof ds);
    if (shmctl(id, IPC_STAT, &ds) != 0)
      return shmL_pusherror(L, "shmctl");

    if (shmL_optfield_int(L, 3, "uid", &v)) {
      if (v < 0 || v > (lua_Integer)UINT32_MAX - 1)
        luaL_argerror(L, 3, "uid out of range");
      ds.shm_perm.uid = (uid_t)v;
    }

    if (shmL_optfield_int(L, 3, "gid", &v)) {
      if (v < 0 || v > (lua_Integer)UINT32_MAX - 1)
        luaL_argerror(L, 3, "gid out of range");
      ds.shm_perm.gid = (gid_t)v;
    }

    if (shmL_optfield_int(L, 3, "mode", &v))
      ds.shm_perm.mode = (unsigned short)shmL_checkmode(L, 3, v);

    if (shmctl(id, IPC_SET, &ds) != 0)
      return shmL_pusherror(L, "shmctl");

    lua_pushboolean(L, 1);
    return 1;

  default:
    return luaL_argerror(L, 2,
                         "unsupported command (IPC_STAT, IPC_SET, IPC_RMID, "
                         "SHM_LOCK or SHM_UNLOCK)");
  }
}

/***
 * Every segment visible to the caller (as `ipcs -m` lists them), each a
 * table with the fields of `stat` plus `id`, in the kernel's order.
 * @function list
 * @treturn[1] table an array of stat tables
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int shm_list(lua_State *L) {
  struct shm_info info;
  struct shmid_ds ds;
  int maxidx, i, n = 0;

  maxidx = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info);
  if (maxidx < 0)
    return shmL_pusherror(L, "shmctl");

  lua_newtable(L);
  for (i = 0; i <= maxidx; i++) {
    memset(&ds, 0, sizeof ds); /* valgrind does not know SHM_STAT_ANY fills it */
#ifdef SHM_STAT_ANY
    int id = shmctl(i, SHM_STAT_ANY, &ds); /* Linux 4.17: no read check */

    if (id < 0 && errno == EINVAL)
      id = shmctl(i, SHM_STAT, &ds);
#else
    int id = shmctl(i, SHM_STAT, &ds);
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
 * Sleep for a number of seconds (fractions allowed).
 * @function sleep
 * @tparam number seconds finite, not negative
 * @treturn[1] true
 * @treturn[2] false when a signal interrupted the sleep
 * @treturn[2] number the seconds left
 */
static int shm_sleep(lua_State *L) {
  lua_Number t = shmL_checknumber(L, 1);
  struct timespec req, rem;

  if (!(t >= 0) || t > (lua_Number)INT32_MAX)
    luaL_argerror(L, 1, "seconds must be a number within 0..2^31");

  req.tv_sec = (time_t)t;
  req.tv_nsec = (long)((t - (lua_Number)req.tv_sec) * 1e9);
  if (req.tv_nsec > 999999999L)
    req.tv_nsec = 999999999L;

  /* Return early on a signal, so that lua.c's SIGINT hook (Ctrl-C) can
   * raise its error at once instead of after the whole sleep. */
  if (nanosleep(&req, &rem) != 0) {
    lua_pushboolean(L, 0);
    lua_pushnumber(L, (lua_Number)rem.tv_sec + (lua_Number)rem.tv_nsec / 1e9);
    return 2;
  }

  lua_pushboolean(L, 1);
  return 1;
}

/***
 * What x is: "segment", "detached segment", or nil (like io.type).
 * @function type
 * @param x any value
 * @treturn string|nil
 */
static int shm_type(lua_State *L) {
  Segment *s;

  luaL_checkany(L, 1);
  s = seg_test(L, 1);
  if (s == NULL)
    luaL_pushfail(L);
  else
    lua_pushstring(L, s->addr ? "segment" : "detached segment");

  return 1;
}

static const luaL_Reg shm_funcs[] = {
    {"ftok", shm_ftok},     {"create", shm_create}, {"open", shm_open},
    {"attach", shm_attach}, {"stat", shm_stat},     {"remove", shm_remove},
    {"shmget", shm_shmget}, {"shmat", shm_shmat},   {"shmdt", shm_shmdt},
    {"shmctl", shm_shmctl}, {"sleep", shm_sleep},   {"type", shm_type},
    {"list", shm_list},     {"private", shm_private},
    {NULL, NULL}};

static void setconstants(lua_State *L) {
#define CONST(c) (lua_pushinteger(L, (lua_Integer)(c)), lua_setfield(L, -2, #c))
  CONST(IPC_PRIVATE);
  CONST(IPC_CREAT);
  CONST(IPC_EXCL);
  CONST(IPC_NOWAIT);
  CONST(IPC_RMID);
  CONST(IPC_SET);
  CONST(IPC_STAT);
  CONST(SHM_RDONLY);
  CONST(SHM_RND);
#ifdef SHM_LOCK
  CONST(SHM_LOCK);
#endif
#ifdef SHM_UNLOCK
  CONST(SHM_UNLOCK);
#endif
  CONST(EACCES);
  CONST(EEXIST);
  CONST(EIDRM);
  CONST(EINVAL);
  CONST(ENOENT);
  CONST(ENOMEM);
  CONST(ENOSPC);
  CONST(EPERM);
#undef CONST
}

__attribute__((visibility("default"))) int luaopen_sysvshm_core(lua_State *L);

int luaopen_sysvshm_core(lua_State *L) {
  luaL_checkversion(L);
  luaL_newlibtable(L, shm_funcs);
  seg_createmeta(L);
  sync_open(L);
  channel_open(L);
  dict_open_module(L);
  sem_open_module(L);
  luaL_setfuncs(L, shm_funcs, 1); /* every function gets the metatable */
  setconstants(L);
  lua_pushliteral(L, "sysvshm " SYSVSHM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
