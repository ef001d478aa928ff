/*
 * sysvshm.dict: the Lua methods (the structure is dict_store.c's).
 *
 * Every method converts and checks its arguments first (which may run Lua
 * code: number-to-string conversion, a finalizer), then checks that the
 * segment is still attached, then works on the region with no Lua call in
 * between (the lock is never held across one), then pushes results copied
 * out of the region.  Names, argument orders, results and error strings
 * follow OpenResty's ngx.shared.DICT.
 */

/***
 * @module sysvshm.dict
 */

/***
 * Dictionary methods.
 * Methods of the dictionary that `new`, `open` and `attach` return.
 * @section methods
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dict.h"

#define DICT_TNAME "sysvshm.dict"

static const char dict_tag = 0;

static Dict *dict_check1(lua_State *L) {
  Dict *d = (Dict *)lua_touserdata(L, 1);

  if (d == NULL || lua_rawlen(L, 1) != sizeof *d || d->tag != &dict_tag)
    luaL_typeerror(L, 1, DICT_TNAME);

  return d;
}

/* After the arguments: the segment must still be attached. */
static Dict *dict_attached(lua_State *L, Dict *d) {
  if (d->seg->addr == NULL)
    luaL_error(L, "attempt to use a dictionary in a detached segment");

  return d;
}

/* ---- arguments ----------------------------------------------------------- */

typedef struct Key {
  const char *s;
  size_t len;
  uint32_t hash;
  const char *err; /* "nil key", "empty key", "key too long" */
} Key;

/* ngx answers a nil, empty or too long key with nil/false and a message
 * rather than an error; other types are a programming error. */
static void checkkey(lua_State *L, int arg, Key *k) {
  k->err = NULL;
  k->s = lua_tolstring(L, arg, &k->len); /* numbers as tostring does */
  if (k->s == NULL) {
    int t = lua_type(L, arg);

    if (t != LUA_TNIL && t != LUA_TNONE)
      luaL_typeerror(L, arg, "string");
    k->err = "nil key";
    k->len = 0;
    k->s = "";
    return;
  }

  if (k->len == 0)
    k->err = "empty key";
  else if (k->len > DICT_MAX_KEY)
    k->err = "key too long";
  else
    k->hash = dict_hash(k->s, k->len);
}

static void checkvalue(lua_State *L, int arg, DictValue *v) {
  v->s = NULL;
  v->len = 0;
  switch (lua_type(L, arg)) {
  case LUA_TNIL:
  case LUA_TNONE:
    v->type = 0;
    break;
  case LUA_TBOOLEAN:
    v->type = DV_BOOL;
    v->i = lua_toboolean(L, arg);
    v->len = 1;
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, arg)) {
      v->type = DV_INT;
      v->i = (int64_t)lua_tointeger(L, arg);
    } else {
      v->type = DV_FLOAT;
      v->n = (double)lua_tonumber(L, arg);
    }
    v->len = 8;
    break;
  case LUA_TSTRING:
    v->type = DV_STRING;
    v->s = lua_tolstring(L, arg, &v->len);
    break;
  default:
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "bad value type (%s): nil, boolean, "
                                     "number or string expected",
                                  luaL_typename(L, arg)));
  }
}

/* exptime in seconds (ms precision, 0 = never) as an absolute monotonic
 * time in ms (0 = never). */
static int64_t checkexptime(lua_State *L, int arg) {
  lua_Number t;

  if (lua_isnoneornil(L, arg))
    return 0;

  t = shmL_checknumber(L, arg);
  if (!(t >= 0) || t > 1e12)
    luaL_argerror(L, arg, "bad \"exptime\" argument");

  if (t == 0)
    return 0;

  {
    int64_t ms = (int64_t)ceil(t * 1000.0);

    return dict_now() + (ms < 1 ? 1 : ms);
  }
}

static uint32_t checkflags(lua_State *L, int arg) {
  lua_Integer f = shmL_optint(L, arg, 0);

  if (f < 0 || (lua_Unsigned)f > UINT32_MAX)
    luaL_argerror(L, arg, "bad \"flags\" argument (0 to 2^32-1)");

  return (uint32_t)f;
}

static void push_value(lua_State *L, Dict *d, const DictOut *o) {
  switch (o->type) {
  case DV_BOOL: lua_pushboolean(L, (int)o->i); break;
  case DV_INT: lua_pushinteger(L, (lua_Integer)o->i); break;
  case DV_FLOAT: lua_pushnumber(L, (lua_Number)o->n); break;
  case DV_STRING: lua_pushlstring(L, d->buf ? d->buf : "", o->len); break;
  default: lua_pushnil(L);
  }
}

/* Raise for what the store could not do (after unlocking). */
static int dict_raise(lua_State *L, int r) {
  if (r == DR_CORRUPT)
    return luaL_error(L, "dict region is corrupt (repaired: what could not "
                         "be verified was dropped)");

  return luaL_error(L, "not enough memory");
}

/* Lock for a call, or raise (a lock held too long, an interrupt, a
 * corrupt lock word).  Writers hold the lock for microseconds (a compaction of a big region for
 * milliseconds): a lock held this long is held by a process that stopped
 * or by bytes a peer wrote over the lock word, and a call must not hang on
 * it for ever. */
#define DICT_LOCK_SECONDS 10.0 /* the default of the lock_timeout option */

static void lock_or_raise(lua_State *L, Dict *d) {
  int r = dict_lock(L, d, d->lock_seconds); /* the clock read only if held */

  if (r == DR_INTERRUPTED) {
    luaL_error(L, "interrupted!");
  } else if (r == DR_TIMEOUT) {
    lua_Integer whole = (lua_Integer)d->lock_seconds; /* <= 1e9: fits */

    luaL_error(L, "dict lock: held for over %s s (by a process that stopped, "
                  "or the lock word was overwritten)",
               (lua_Number)whole == d->lock_seconds
                   ? lua_pushfstring(L, "%I", whole)
                   : lua_pushfstring(L, "%f", (lua_Number)d->lock_seconds));
  } else if (r != DR_OK) {
    dict_raise(L, r);
  }
}

/* ---- reading ------------------------------------------------------------- */

/* Look key up: DR_OK with o filled, DR_NOTFOUND; lock-free when it can. */
static int lookup(lua_State *L, Dict *d, const Key *k, DictOut *o,
                  uint32_t *where) {
  int r = dict_peek(d, k->s, k->len, k->hash, o, where);

  if (r < 0) { /* writers kept changing it, or garbage: under the lock */
    uint32_t link;
    int corrupt = 0;

    lock_or_raise(L, d);
    *where = dict_find(d, k->s, k->len, k->hash, &link, &corrupt, NULL);
    if (corrupt) {
      dict_repair(d);
      dict_unlock(d);
      return dict_raise(L, DR_CORRUPT);
    }
    r = DR_NOTFOUND;
    if (*where != 0) {
      int c = dict_copyout(d, *where, o);

      dict_unlock(d);
      if (c != 0)
        return dict_raise(L, DR_NOMEM);
      return DR_OK;
    }
    dict_unlock(d);
  }
  return r;
}

/* The answer to a nil, empty or too long key, as ngx gives it: nil (or
 * false, for the calls that answer ok, err) and the message. */
static int key_error(lua_State *L, const Key *k, int boolean) {
  if (boolean)
    lua_pushboolean(L, 0);
  else
    lua_pushnil(L);
  lua_pushstring(L, k->err);
  return 2;
}

/* The unexpired value of k: 1 with *o filled, else 0. */
static int live_value(lua_State *L, Dict *d, const Key *k, DictOut *o,
                      uint32_t *where) {
  return lookup(L, d, k, o, where) == DR_OK &&
         !(o->expire != 0 && o->expire <= dict_now());
}

static int get_common(lua_State *L, int stale) {
  Dict *d = dict_check1(L);
  DictOut o;
  uint32_t where;
  Key k;
  int r, n;

  checkkey(L, 2, &k);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  r = lookup(L, d, &k, &o, &where);
  if (r != DR_OK) {
    lua_pushnil(L);
    return 1;
  }

  o.stale = o.expire != 0 && o.expire <= dict_now(); /* the clock only for TTLs */
  if (o.stale && !stale) {
    lua_pushnil(L);
    return 1;
  }

  dict_record_read(d, where);
  if (o.type == DV_LIST) {
    lua_pushnil(L);
    lua_pushliteral(L, "value is a list");
    return 2;
  }

  push_value(L, d, &o);
  n = 1;
  if (o.flags != 0 || stale) {
    if (o.flags != 0)
      lua_pushinteger(L, (lua_Integer)o.flags);
    else
      lua_pushnil(L);
    n++;
  }
  if (stale) {
    lua_pushboolean(L, o.stale);
    n++;
  }
  return n;
}

/***
 * The value of key: `value`, or `value, flags` when flags are not 0; nil
 * when there is none or it expired.  A list gives `nil, "value is a list"`.
 * Reads take no lock.
 * @function dict:get
 * @tparam string key (numbers are converted as `tostring` does)
 * @return value, flags
 */
static int d_get(lua_State *L) { return get_common(L, 0); }

/***
 * As `get`, also for an expired value not yet reclaimed: `value, flags,
 * stale` (stale: whether it expired).
 * @function dict:get_stale
 * @tparam string key
 * @return value, flags, stale
 */
static int d_get_stale(lua_State *L) { return get_common(L, 1); }

/***
 * The version of key: an integer that changes on every change of the key;
 * nil if there is none (or it expired).
 * @function dict:version
 * @tparam string key
 * @treturn integer|nil
 */
static int d_version(lua_State *L) {
  Dict *d = dict_check1(L);
  DictOut o;
  uint32_t where;
  Key k;

  checkkey(L, 2, &k);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  if (!live_value(L, d, &k, &o, &where)) {
    lua_pushnil(L);
    return 1;
  }

  lua_pushinteger(L, (lua_Integer)o.version);
  return 1;
}

/* ---- writing ------------------------------------------------------------- */

enum { OP_SET, OP_SAFE_SET, OP_ADD, OP_SAFE_ADD, OP_REPLACE, OP_DELETE };

/* Under the lock: the live entry for k (0 if none or expired). */
/* *s: the entry's checked header when *off is not 0. */
static int find_live(Dict *d, const Key *k, uint32_t *link, uint32_t *off,
                     DictEntry *s) {
  int corrupt = 0;

  *off = dict_find(d, k->s, k->len, k->hash, link, &corrupt, s);
  if (corrupt)
    return DR_CORRUPT;

  if (*off != 0 && s->expire != 0 && s->expire <= dict_now())
    return DR_NOTFOUND; /* *off still names it: replaced or removed */

  return *off ? DR_OK : DR_NOTFOUND;
}

/* Finish a locked call: unlock; raise for corruption (repaired first) and
 * for memory. */
static void finish(lua_State *L, Dict *d, int r) {
  if (r == DR_CORRUPT)
    dict_repair(d); /* ends the write section (seq even again) */
  else
    dict_write_end(d);
  dict_unlock(d);
  if (r == DR_CORRUPT)
    dict_raise(L, r);
}

static int store(lua_State *L, int op) {
  Dict *d = dict_check1(L);
  DictValue v;
  int64_t expire = 0;
  uint32_t flags = 0, link, off;
  int forcible = 0, r, live;
  const char *err = NULL;
  DictEntry found;
  Key k;

  checkkey(L, 2, &k);
  if (op != OP_DELETE) {
    int top = lua_gettop(L);

    checkvalue(L, 3, &v);
    if (top >= 4) { /* the options: most calls have none */
      expire = checkexptime(L, 4);
      flags = checkflags(L, 5);
    }
    if (v.type == 0 && (op == OP_ADD || op == OP_SAFE_ADD))
      luaL_argerror(L, 3, "bad value type (nil)");
  } else {
    v.type = 0;
  }

  if (k.err != NULL)
    return key_error(L, &k, 1);

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  live = find_live(d, &k, &link, &off, &found);
  if (live == DR_CORRUPT) {
    r = DR_CORRUPT;
  } else if ((op == OP_ADD || op == OP_SAFE_ADD) && live == DR_OK) {
    r = DR_EXISTS;
  } else if (op == OP_REPLACE && live != DR_OK) {
    r = DR_NOTFOUND;
  } else if (v.type == 0) {
    if (off != 0)
      dict_remove(d, link, off);
    r = DR_OK;
  } else {
    int evict = op == OP_SET || op == OP_ADD || op == OP_REPLACE;

    r = dict_put(d, k.s, k.len, k.hash, &v, flags, expire, evict, &forcible,
                 NULL, 0, link, off, &found);
  }
  finish(L, d, r);

  switch (r) {
  case DR_OK: break;
  case DR_EXISTS: err = "exists"; break;
  case DR_NOTFOUND: err = "not found"; break;
  default: err = "no memory";
  }
  lua_pushboolean(L, err == NULL);
  if (err != NULL)
    lua_pushstring(L, err);
  else
    lua_pushnil(L);
  lua_pushboolean(L, forcible);
  return 3;
}

/***
 * Store key = value (nil deletes), evicting least recently used entries
 * when full.
 * @function dict:set
 * @tparam string key
 * @param value nil, boolean, number or string
 * @tparam[opt=0] number exptime seconds (ms precision; 0: never)
 * @tparam[opt=0] integer flags user flags (0 to 2^32-1), returned by get
 * @treturn boolean ok
 * @treturn string|nil err "no memory"
 * @treturn boolean forcible whether valid entries were evicted
 */
static int d_set(lua_State *L) { return store(L, OP_SET); }

/***
 * As `set`, never evicting: "no memory" when it does not fit.
 * @function dict:safe_set
 */
static int d_safe_set(lua_State *L) { return store(L, OP_SAFE_SET); }

/***
 * As `set`, only if key has no (unexpired) value: else false, "exists".
 * @function dict:add
 */
static int d_add(lua_State *L) { return store(L, OP_ADD); }

/***
 * As `add`, never evicting.
 * @function dict:safe_add
 */
static int d_safe_add(lua_State *L) { return store(L, OP_SAFE_ADD); }

/***
 * As `set`, only if key has a value: else false, "not found".
 * @function dict:replace
 */
static int d_replace(lua_State *L) { return store(L, OP_REPLACE); }

/***
 * Remove key (`set(key, nil)`).
 * @function dict:delete
 * @tparam string key
 */
static int d_delete(lua_State *L) { return store(L, OP_DELETE); }

/* incr's step: a number, or a string that converts to one. */
static void checkstep(lua_State *L, int arg, DictValue *v) {
  int t = lua_type(L, arg);

  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, arg, &len);

    if (lua_stringtonumber(L, s) != len + 1)
      luaL_argerror(L, arg, "cannot add a string that is not a number");
    lua_replace(L, arg);
  } else if (t != LUA_TNUMBER) {
    luaL_argerror(L, arg, lua_pushfstring(L, "number expected, got %s",
                                          luaL_typename(L, arg)));
  }

  checkvalue(L, arg, v);
}

static void add_values(DictValue *r, const DictValue *a, const DictValue *b) {
  if (a->type == DV_INT && b->type == DV_INT) {
    r->type = DV_INT; /* wraps around, as Lua's integers do */
    r->i = (int64_t)((uint64_t)a->i + (uint64_t)b->i);
  } else {
    r->type = DV_FLOAT;
    r->n = (a->type == DV_INT ? (double)a->i : a->n) +
           (b->type == DV_INT ? (double)b->i : b->n);
  }
  r->len = 8;
  r->s = NULL;
}

/***
 * Add value to the number at key and return the sum.  Integers stay
 * integers (wrapping around as Lua's do); a float makes a float.  A
 * missing key is created with init + value when init is given (expiring
 * after init_ttl seconds), else `nil, "not found"`; a value that is not a
 * number gives `nil, "not a number"`.
 * @function dict:incr
 * @tparam string key
 * @tparam number value the step (a numeric string converts)
 * @tparam[opt] number init
 * @tparam[opt] number init_ttl
 * @treturn number|nil the new value
 * @treturn string|nil err
 * @treturn boolean forcible
 */
static int d_incr(lua_State *L) {
  Dict *d = dict_check1(L);
  DictValue step, init, sum;
  int64_t expire = 0;
  uint32_t link, off;
  int forcible = 0, r, live;
  DictEntry found;
  Key k;

  checkkey(L, 2, &k);
  if (lua_isinteger(L, 3)) { /* the usual step: an integer */
    step.type = DV_INT;
    step.i = (int64_t)lua_tointeger(L, 3);
    step.len = 8;
  } else {
    checkstep(L, 3, &step);
  }
  init.type = 0;
  if (lua_isinteger(L, 4)) {
    init.type = DV_INT;
    init.i = (int64_t)lua_tointeger(L, 4);
    init.len = 8;
  } else if (!lua_isnoneornil(L, 4)) {
    if (lua_type(L, 4) != LUA_TNUMBER)
      luaL_argerror(L, 4, "number expected");
    checkvalue(L, 4, &init);
  }
  if (init.type != 0 && lua_gettop(L) >= 5)
    expire = checkexptime(L, 5);

  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  live = find_live(d, &k, &link, &off, &found);
  sum.type = 0;
  if (live == DR_CORRUPT) {
    r = DR_CORRUPT;
  } else if (live != DR_OK) {
    if (init.type == 0) {
      r = DR_NOTFOUND;
    } else {
      add_values(&sum, &init, &step);
      r = dict_put(d, k.s, k.len, k.hash, &sum, 0, expire, 1, &forcible, NULL, 0,
                   link, off, off != 0 ? &found : NULL);
    }
  } else {
    DictEntry s = found, *e = (DictEntry *)(void *)(dict_base(d) + off);
    DictValue cur;

    memset(&cur, 0, sizeof cur);
    if ((s.vtype != DV_INT && s.vtype != DV_FLOAT) || s.vlen != 8) {
      r = s.vtype == DV_INT || s.vtype == DV_FLOAT ? DR_CORRUPT : DR_NOTNUMBER;
    } else {
      unsigned char *p = (unsigned char *)(e + 1) + s.klen;

      cur.type = s.vtype;
      memcpy(s.vtype == DV_INT ? (void *)&cur.i : (void *)&cur.n, p, 8);
      add_values(&sum, &cur, &step);
      if (sum.type == s.vtype) { /* in place: one 8-byte store */
        memcpy(p, sum.type == DV_INT ? (void *)&sum.i : (void *)&sum.n, 8);
        dict_bump_entry(d, e, &s);
        dict_touch_entry(d, off, e);
        r = DR_OK;
      } else {
        r = dict_put(d, k.s, k.len, k.hash, &sum, s.flags, s.expire, 1,
                     &forcible, NULL, 0, link, off, &found);
      }
    }
  }
  finish(L, d, r);

  if (r != DR_OK) {
    lua_pushnil(L);
    lua_pushstring(L, r == DR_NOTFOUND ? "not found"
                      : r == DR_NOTNUMBER ? "not a number" : "no memory");
    return 2;
  }

  if (sum.type == DV_INT)
    lua_pushinteger(L, (lua_Integer)sum.i);
  else
    lua_pushnumber(L, (lua_Number)sum.n);
  lua_pushnil(L);
  lua_pushboolean(L, forcible);
  return 3;
}

/* ---- lists --------------------------------------------------------------- */

/* A list value: u32 count, then elements: u8 type, then 8 bytes (numbers,
 * native order) or u32 length and the bytes (strings). */

static size_t elem_size(const DictValue *v) {
  return v->type == DV_STRING ? 5u + v->len : 9u;
}

static void elem_write(unsigned char *p, const DictValue *v) {
  uint32_t n;

  p[0] = (unsigned char)v->type;
  switch (v->type) {
  case DV_INT: memcpy(p + 1, &v->i, 8); break;
  case DV_FLOAT: memcpy(p + 1, &v->n, 8); break;
  default:
    n = (uint32_t)v->len;
    memcpy(p + 1, &n, 4);
    memcpy(p + 5, v->s, v->len);
  }
}

/* The size of the element at p (avail bytes there), 0 when malformed. */
static size_t elem_parse(const unsigned char *p, size_t avail) {
  uint32_t n;

  if (avail < 1)
    return 0;

  if (p[0] == DV_INT || p[0] == DV_FLOAT)
    return avail >= 9 ? 9 : 0;

  if (p[0] != DV_STRING || avail < 5)
    return 0;

  memcpy(&n, p + 1, 4);
  return n <= avail - 5 ? 5u + n : 0;
}

/* Check a list value of len bytes: its count, or -1. */
static long list_check(const unsigned char *p, size_t len, size_t *last) {
  uint32_t count, i;
  size_t pos = 4, sz;

  if (len < 4)
    return -1;

  memcpy(&count, p, 4);
  *last = 4;
  for (i = 0; i < count; i++) {
    sz = elem_parse(p + pos, len - pos);
    if (sz == 0)
      return -1;
    *last = pos;
    pos += sz;
  }
  return pos == len ? (long)count : -1;
}

static int grow(Dict *d, size_t n) {
  if (n > d->bufsize) {
    char *nb = (char *)realloc(d->buf, n);

    if (nb == NULL)
      return -1;
    d->buf = nb;
    d->bufsize = n;
  }
  return 0;
}

static int push_common(lua_State *L, int left) {
  Dict *d = dict_check1(L);
  DictValue v, lv;
  uint32_t link, off, count = 0;
  int forcible = 0, r, live;
  long n = 0;
  DictEntry found;
  Key k;

  checkkey(L, 2, &k);
  if (lua_type(L, 3) != LUA_TNUMBER && lua_type(L, 3) != LUA_TSTRING)
    luaL_argerror(L, 3, "bad value type (number or string expected)");
  checkvalue(L, 3, &v);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  live = find_live(d, &k, &link, &off, &found);
  if (live == DR_CORRUPT) {
    r = DR_CORRUPT;
  } else {
    DictEntry s, *e = live == DR_OK ? dict_entry(d, off, &s) : NULL;
    const unsigned char *old = NULL;
    size_t oldlen = 0, last, es = elem_size(&v);
    int64_t expire = 0;

    r = DR_OK;
    if (e != NULL) {
      if (s.vtype != DV_LIST) {
        r = DR_NOTLIST;
      } else {
        old = (const unsigned char *)(e + 1) + s.klen;
        oldlen = s.vlen;
        n = list_check(old, oldlen, &last);
        expire = s.expire;
        if (n < 0 || n >= (long)UINT32_MAX)
          r = DR_CORRUPT;
      }
    } else {
      old = NULL;
      oldlen = 4;
    }

    /* cppcheck-suppress knownConditionTrueFalse ; r may be DR_NOTLIST */
    if (r == DR_OK && (oldlen + es > d->region || grow(d, oldlen + es) != 0))
      r = DR_NOMEM;

    if (r == DR_OK) {
      unsigned char *b = (unsigned char *)d->buf;

      count = (uint32_t)n + 1u;
      memcpy(b, &count, 4);
      /* (old is NULL for a new list; cppcheck's value flow loses that e
       * may be set, hence the suppressions) */
      if (left) {
        elem_write(b + 4, &v);
        /* cppcheck-suppress knownConditionTrueFalse */
        if (old != NULL)
          memcpy(b + 4 + es, old + 4, oldlen - 4);
      } else {
        /* cppcheck-suppress knownConditionTrueFalse */
        if (old != NULL)
          memcpy(b + 4, old + 4, oldlen - 4);
        elem_write(b + oldlen, &v);
      }
      lv.type = DV_LIST;
      lv.s = d->buf;
      lv.len = oldlen + es;
      r = dict_put(d, k.s, k.len, k.hash, &lv, 0, expire, 1, &forcible, NULL, 0,
                   link, off, NULL);
    }
  }
  finish(L, d, r);

  if (r != DR_OK) {
    lua_pushnil(L);
    lua_pushstring(L, r == DR_NOTLIST ? "value not a list" : "no memory");
    return 2;
  }

  lua_pushinteger(L, (lua_Integer)count);
  return 1;
}

/***
 * Insert value at the head of the list at key (made if missing): the new
 * length, or `nil, "value not a list"` / `nil, "no memory"`.
 * @function dict:lpush
 * @tparam string key
 * @tparam number|string value
 * @treturn integer|nil
 * @treturn string|nil err
 */
static int d_lpush(lua_State *L) { return push_common(L, 1); }

/***
 * Insert value at the tail of the list at key.
 * @function dict:rpush
 */
static int d_rpush(lua_State *L) { return push_common(L, 0); }

static int pop_common(lua_State *L, int left) {
  Dict *d = dict_check1(L);
  uint32_t link, off;
  int forcible = 0, r, live;
  DictOut o;
  DictEntry found;
  Key k;

  checkkey(L, 2, &k);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  o.type = 0;
  live = find_live(d, &k, &link, &off, &found);
  if (live == DR_CORRUPT) {
    r = DR_CORRUPT;
  } else if (live != DR_OK) {
    r = DR_NOTFOUND;
  } else {
    DictEntry s, *e = dict_entry(d, off, &s);
    const unsigned char *p = e ? (const unsigned char *)(e + 1) + s.klen : NULL;
    size_t len = e ? s.vlen : 0, last, at, es;
    long n;

    if (e == NULL) {
      r = DR_CORRUPT;
    } else if (s.vtype != DV_LIST) {
      r = DR_NOTLIST;
    } else if ((n = list_check(p, len, &last)) < 0) {
      r = DR_CORRUPT;
    } else if (n == 0) {
      dict_remove(d, link, off);
      r = DR_NOTFOUND;
    } else {
      at = left ? 4 : last;
      es = elem_parse(p + at, len - at);
      /* the element out, before the entry may move */
      o.type = p[at];
      if (o.type == DV_STRING) {
        o.len = es - 5;
        if (grow(d, len) != 0) {
          r = DR_NOMEM;
          goto done;
        }
        memcpy(d->buf, p + at + 5, o.len);
      } else if (o.type == DV_INT) {
        memcpy(&o.i, p + at + 1, 8);
      } else {
        memcpy(&o.n, p + at + 1, 8);
      }
      if (n == 1) {
        dict_remove(d, link, off);
        r = DR_OK;
      } else {
        /* the rest, after the popped string (kept at the buffer start) */
        size_t keep = o.type == DV_STRING ? o.len : 0, restlen = len - es;
        uint32_t count = (uint32_t)n - 1u;
        unsigned char *b;
        DictValue lv;

        if (grow(d, keep + restlen) != 0) {
          r = DR_NOMEM;
          goto done;
        }
        b = (unsigned char *)d->buf + keep;
        memcpy(b, &count, 4);
        if (left) {
          memcpy(b + 4, p + 4 + es, len - 4 - es);
        } else {
          memcpy(b + 4, p + 4, last - 4);
        }
        lv.type = DV_LIST;
        lv.s = (const char *)b;
        lv.len = restlen;
        r = dict_put(d, k.s, k.len, k.hash, &lv, s.flags, s.expire, 1,
                     &forcible, NULL, 0, link, off, NULL);
      }
    }
  }
done:
  finish(L, d, r);

  if (r == DR_NOTLIST) {
    lua_pushnil(L);
    lua_pushliteral(L, "value not a list");
    return 2;
  }
  if (r == DR_NOMEM)
    return dict_raise(L, r);
  if (r != DR_OK) {
    lua_pushnil(L);
    return 1;
  }

  push_value(L, d, &o);
  return 1;
}

/***
 * Remove and return the head of the list at key (nil when empty or
 * missing; the key goes when the list is empty).
 * @function dict:lpop
 * @tparam string key
 * @return value
 */
static int d_lpop(lua_State *L) { return pop_common(L, 1); }

/***
 * Remove and return the tail of the list at key.
 * @function dict:rpop
 */
static int d_rpop(lua_State *L) { return pop_common(L, 0); }

/***
 * The length of the list at key (0 when missing).
 * @function dict:llen
 * @tparam string key
 * @treturn integer|nil
 * @treturn string|nil "value not a list"
 */
static int d_llen(lua_State *L) {
  Dict *d = dict_check1(L);
  uint32_t where;
  DictOut o;
  Key k;
  long n;
  size_t last;

  checkkey(L, 2, &k);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  if (!live_value(L, d, &k, &o, &where)) {
    lua_pushinteger(L, 0);
    return 1;
  }

  if (o.type != DV_LIST) {
    lua_pushnil(L);
    lua_pushliteral(L, "value not a list");
    return 2;
  }

  n = list_check((const unsigned char *)d->buf, o.len, &last);
  if (n < 0)
    return luaL_error(L, "dict region is corrupt (a list value is malformed)");

  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* ---- expiry -------------------------------------------------------------- */

/***
 * Seconds until key expires (0: never), or `nil, "not found"`.
 * @function dict:ttl
 * @tparam string key
 * @treturn number|nil
 */
static int d_ttl(lua_State *L) {
  Dict *d = dict_check1(L);
  uint32_t where;
  DictOut o;
  int64_t now;
  Key k;

  checkkey(L, 2, &k);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  now = dict_now();
  if (lookup(L, d, &k, &o, &where) != DR_OK || (o.expire != 0 && o.expire <= now)) {
    lua_pushnil(L);
    lua_pushliteral(L, "not found");
    return 2;
  }

  if (o.expire == 0)
    lua_pushinteger(L, 0);
  else
    lua_pushnumber(L, (lua_Number)(o.expire - now) / 1000.0);
  return 1;
}

/***
 * Set key to expire exptime seconds from now (0: never): true, or `nil,
 * "not found"`.
 * @function dict:expire
 * @tparam string key
 * @tparam number exptime
 * @treturn boolean|nil
 */
static int d_expire(lua_State *L) {
  Dict *d = dict_check1(L);
  int64_t expire;
  uint32_t link, off;
  int r;
  DictEntry found;
  Key k;

  checkkey(L, 2, &k);
  luaL_checkany(L, 3);
  expire = checkexptime(L, 3);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  r = find_live(d, &k, &link, &off, &found);
  if (r == DR_OK) {
    DictEntry s, *e = dict_entry(d, off, &s);

    if (e == NULL) {
      r = DR_CORRUPT;
    } else {
      e->expire = expire;
      dict_bump(d, off);
    }
  }
  finish(L, d, r);

  if (r != DR_OK) {
    lua_pushnil(L);
    lua_pushliteral(L, "not found");
    return 2;
  }

  lua_pushboolean(L, 1);
  return 1;
}

/***
 * Make every entry expired (their memory is reclaimed as needed, or by
 * `flush_expired`).
 * @function dict:flush_all
 */
static int d_flush_all(lua_State *L) {
  Dict *d = dict_attached(L, dict_check1(L));

  lock_or_raise(L, d);
  dict_write_begin(d);
  (void)dict_flush_expired(d, 0, 1);
  finish(L, d, DR_OK);
  return 0;
}

/***
 * Reclaim expired entries, at most max of them (0 or none: all): how many.
 * @function dict:flush_expired
 * @tparam[opt=0] integer max
 * @treturn integer
 */
static int d_flush_expired(lua_State *L) {
  Dict *d = dict_check1(L);
  lua_Integer max = shmL_optint(L, 2, 0);
  uint64_t n;

  if (max < 0)
    luaL_argerror(L, 2, "must not be negative");

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  n = dict_flush_expired(d, (uint64_t)max, 0);
  finish(L, d, DR_OK);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* ---- keys ---------------------------------------------------------------- */

/* Under the lock: append the unexpired keys of buckets [*b, ...) to d->buf
 * as (u32 length, bytes) records, until `want` keys (0: no limit) or
 * whole buckets end; *b is left at the next bucket.  The count, or -1 for
 * memory. */
static long collect(Dict *d, uint32_t *b, uint64_t want, size_t *used,
                    int whole) {
  int64_t now = dict_now();
  long n = 0;

  for (; *b < d->nbuckets && (want == 0 || (uint64_t)n < want); (*b)++) {
    uint32_t off = *(uint32_t *)(void *)(dict_base(d) + d->buckets_off + 4u * *b);
    uint32_t steps = (d->heap_end - d->heap_off) / 8u + 1u;

    for (; off != 0 && steps > 0; steps--) {
      DictEntry s, *e = dict_entry(d, off, &s);

      if (e == NULL)
        break;
      if (!(s.expire != 0 && s.expire <= now)) {
        if (!whole && want != 0 && (uint64_t)n >= want)
          return n;
        if (grow(d, *used + 4 + s.klen) != 0)
          return -1;
        memcpy(d->buf + *used, &s.klen, 4);
        memcpy(d->buf + *used + 4, e + 1, s.klen);
        *used += 4 + s.klen;
        n++;
      }
      off = s.next;
    }
  }
  return n;
}

/* Push the n keys collect() left in d->buf as a list.  The pushes may run
 * a finalizer that uses this handle and its buffer: the buffer is taken
 * from the handle meanwhile (and lost if a push raises: on a memory
 * error only). */
static void push_keys(lua_State *L, Dict *d, long n, size_t used) {
  char *mine = d->buf;
  size_t mysize = d->bufsize, pos = 0;
  long i;

  d->buf = NULL;
  d->bufsize = 0;
  lua_createtable(L, (int)(n > INT_MAX ? INT_MAX : n), 0);
  for (i = 1; i <= n && pos + 4 <= used; i++) {
    uint32_t len;

    memcpy(&len, mine + pos, 4);
    if (len > used - pos - 4)
      break;
    lua_pushlstring(L, mine + pos + 4, len);
    lua_rawseti(L, -2, i);
    pos += 4 + len;
  }
  if (d->buf != NULL) { /* a finalizer made one meanwhile */
    free(mine);
  } else {
    d->buf = mine;
    d->bufsize = mysize;
  }
}

/***
 * The keys (unexpired), at most max of them (default 1024; 0: all), under
 * one lock (as ngx's; for big dictionaries see `keys`).
 * @function dict:get_keys
 * @tparam[opt=1024] integer max
 * @treturn {string,...}
 */
static int d_get_keys(lua_State *L) {
  Dict *d = dict_check1(L);
  lua_Integer max = shmL_optint(L, 2, 1024);
  uint32_t b = 0;
  size_t used = 0;
  long n;

  if (max < 0)
    luaL_argerror(L, 2, "must not be negative");

  dict_attached(L, d);
  lock_or_raise(L, d);
  n = collect(d, &b, (uint64_t)max, &used, 0);
  dict_unlock(d);
  if (n < 0)
    return luaL_error(L, "not enough memory");

  push_keys(L, d, n, used);
  return 1;
}

/***
 * A page of keys: about count keys (whole hash buckets) from cursor, and
 * the cursor of the next page (nil at the end).  The lock is held for one
 * page only, so a big dictionary never stalls the others; a key present
 * during the whole scan is returned exactly once.
 * @function dict:keys
 * @tparam[opt=0] integer cursor
 * @tparam[opt=100] integer count
 * @treturn {string,...}
 * @treturn integer|nil next cursor
 */
static int d_keys(lua_State *L) {
  Dict *d = dict_check1(L);
  lua_Integer cursor = shmL_optint(L, 2, 0), count = shmL_optint(L, 3, 100);
  size_t used = 0;
  uint32_t b;
  long n;

  if (cursor < 0)
    luaL_argerror(L, 2, "cursor must not be negative");
  if (count < 1)
    luaL_argerror(L, 3, "count must be positive");

  dict_attached(L, d);
  if ((lua_Unsigned)cursor >= d->nbuckets) {
    lua_newtable(L);
    lua_pushnil(L);
    return 2;
  }

  b = (uint32_t)cursor;
  lock_or_raise(L, d);
  n = collect(d, &b, (uint64_t)count, &used, 1);
  dict_unlock(d);
  if (n < 0)
    return luaL_error(L, "not enough memory");

  push_keys(L, d, n, used);
  if (b >= d->nbuckets)
    lua_pushnil(L);
  else
    lua_pushinteger(L, (lua_Integer)b);
  return 2;
}

/* ---- compare and set ----------------------------------------------------- */

/* e's value against v; s: e's checked header. */
static int same_value(const DictEntry *e, const DictEntry *s, const DictValue *v) {
  const unsigned char *p = (const unsigned char *)(e + 1) + s->klen;

  if (s->vtype != v->type)
    return 0;

  switch (v->type) {
  case DV_BOOL: return s->vlen >= 1 && (p[0] != 0) == (v->i != 0);
  case DV_INT: return s->vlen == 8 && memcmp(p, &v->i, 8) == 0;
  case DV_FLOAT: return s->vlen == 8 && memcmp(p, &v->n, 8) == 0;
  default: return s->vlen == v->len && memcmp(p, v->s, v->len) == 0;
  }
}

/***
 * Compare and set: store new at key only if its value is old (same type
 * and bytes; nil: no value).  true, or false and the current value.
 * @function dict:cas
 * @tparam string key
 * @param old
 * @param new (nil deletes)
 * @tparam[opt=0] number exptime
 * @tparam[opt=0] integer flags
 * @treturn boolean
 * @return the current value when it differs
 */
static int d_cas(lua_State *L) {
  Dict *d = dict_check1(L);
  DictValue old, nv;
  int64_t expire;
  uint32_t flags, link, off;
  int forcible = 0, r, live;
  DictOut o;
  DictEntry found;
  Key k;

  checkkey(L, 2, &k);
  checkvalue(L, 3, &old);
  checkvalue(L, 4, &nv);
  expire = checkexptime(L, 5);
  flags = checkflags(L, 6);
  if (k.err != NULL)
    return key_error(L, &k, 0);

  dict_attached(L, d);
  lock_or_raise(L, d);
  dict_write_begin(d);
  o.type = 0;
  live = find_live(d, &k, &link, &off, &found);
  if (live == DR_CORRUPT) {
    r = DR_CORRUPT;
  } else {
    DictEntry s, *e = live == DR_OK ? dict_entry(d, off, &s) : NULL;
    int match = e == NULL ? old.type == 0 : old.type != 0 && same_value(e, &s, &old);

    if (!match) {
      r = DR_MISMATCH;
      if (e != NULL && dict_copyout(d, off, &o) != 0)
        r = DR_NOMEM;
    } else if (nv.type == 0) {
      if (off != 0)
        dict_remove(d, link, off);
      r = DR_OK;
    } else {
      r = dict_put(d, k.s, k.len, k.hash, &nv, flags, expire, 1, &forcible,
                   NULL, 0, link, off, NULL);
    }
  }
  finish(L, d, r);

  if (r == DR_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == DR_NOMEM && o.type == 0) {
    lua_pushboolean(L, 0);
    lua_pushnil(L);
    lua_pushliteral(L, "no memory");
    return 3;
  }
  if (r == DR_NOMEM)
    return dict_raise(L, r);

  lua_pushboolean(L, 0);
  if (o.type == DV_LIST)
    lua_pushnil(L);
  else
    push_value(L, d, &o);
  return 2;
}

/* ---- waiting ------------------------------------------------------------- */

/***
 * Sleep until the version of key differs from version (a futex: no
 * polling), then true; `false, "timeout"` when the timeout passes.
 * Ctrl-C interrupts it.
 * @function dict:wait
 * @tparam string key
 * @tparam integer|nil version as `version` returned it (nil: absent)
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn boolean
 * @treturn[opt] string "timeout"
 */
static int d_wait(lua_State *L) {
  Dict *d = dict_check1(L);
  lua_Integer want = lua_isnil(L, 3) ? 0 : shmL_checkint(L, 3);
  struct timespec deadline;
  double seconds;
  int timed = sync_opttimeout(L, 4, &seconds);
  ShmWaiter wt;
  uint32_t *slot;
  Key k;

  checkkey(L, 2, &k);
  if (k.err != NULL)
    luaL_argerror(L, 2, k.err);

  dict_attached(L, d);
  if (timed)
    sync_deadline(&deadline, seconds);
  sync_waitstart(L, &wt);
  slot = (uint32_t *)(void *)(dict_base(d) + DICT_WAIT_OFF + 8u * (uint32_t)dict_wslot(k.hash));
  for (;;) {
    struct timespec limit;
    uint32_t seen;
    DictOut o;
    uint32_t where;
    lua_Integer cur = 0;
    int r, capped;

    /* the waiter's half of the handshake (wake_slot in dict_store.c):
     * count ourselves, then read the slot word and seq (seq_cst: after a
     * writer's seq increment that did not see our count), then the key */
    __atomic_fetch_add(&slot[1], 1, __ATOMIC_SEQ_CST);
    seen = __atomic_load_n(&slot[0], __ATOMIC_SEQ_CST);
    (void)__atomic_load_n(&dict_header(d)->seq, __ATOMIC_SEQ_CST);
    r = dict_peek(d, k.s, k.len, k.hash, &o, &where);
    if (r == DR_OK && !(o.expire != 0 && o.expire <= dict_now()))
      cur = (lua_Integer)o.version;
    if (r >= 0 && cur != want) {
      __atomic_fetch_sub(&slot[1], 1, __ATOMIC_SEQ_CST);
      lua_pushboolean(L, 1);
      return 1;
    }

    /* sleep at most 100 ms at a time: an expiry changes nothing in the
     * region, and a writer killed before waking must not strand us */
    sync_deadline(&limit, 0.1);
    capped = !timed || deadline.tv_sec > limit.tv_sec ||
             (deadline.tv_sec == limit.tv_sec && deadline.tv_nsec > limit.tv_nsec);
    r = sync_futexwait(&wt, &slot[0], seen, capped ? &limit : &deadline);
    __atomic_fetch_sub(&slot[1], 1, __ATOMIC_SEQ_CST);
    if (r == 2) {
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "interrupted");
      return 2;
    }
    if (r == 0 && !capped) {
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    if (d->seg->addr == NULL) /* cannot happen (no Lua ran), but cheap */
      return luaL_error(L, "attempt to use a dictionary in a detached segment");
  }
}

/* ---- sizes, stats, check ------------------------------------------------- */

/***
 * The region's size in bytes.
 * @function dict:capacity
 * @treturn integer
 */
static int d_capacity(lua_State *L) {
  Dict *d = dict_attached(L, dict_check1(L));

  lua_pushinteger(L, (lua_Integer)d->region);
  return 1;
}

/***
 * Free bytes: a new entry of up to this many bytes (56 bytes of header,
 * the key, the value, rounded up to 8) fits without evicting anything.
 * @function dict:free_space
 * @treturn integer
 */
static int d_free_space(lua_State *L) {
  Dict *d = dict_attached(L, dict_check1(L));
  size_t f;

  lock_or_raise(L, d);
  f = dict_free_bytes(d);
  dict_unlock(d);
  lua_pushinteger(L, (lua_Integer)f);
  return 1;
}

#define SETINT(name, v)                       \
  do {                                        \
    lua_pushinteger(L, (lua_Integer)(v));     \
    lua_setfield(L, -2, name);                \
  } while (0)

/***
 * Numbers about the dictionary: `entries`, `used` (bytes of live entries),
 * `free` (as `free_space`), `largest` (the most key and value bytes one
 * entry can have now), `capacity`, `evictions`, `expirations`,
 * `contention` (calls that found the lock taken), `repairs`.
 * @function dict:stats
 * @treturn table
 */
static int d_stats(lua_State *L) {
  Dict *d = dict_attached(L, dict_check1(L));
  DictState st;
  size_t f, big;

  lock_or_raise(L, d);
  st = *dict_state(d);
  f = dict_free_bytes(d);
  big = dict_largest(d);
  dict_unlock(d);
  lua_createtable(L, 0, 9);
  SETINT("entries", st.entries);
  SETINT("used", st.live);
  SETINT("free", f);
  SETINT("largest", big);
  SETINT("capacity", d->region);
  SETINT("evictions", st.evictions);
  SETINT("expirations", st.expirations);
  SETINT("contention", st.contention);
  SETINT("repairs", st.repairs);
  return 1;
}

/***
 * Walk the whole structure: nil when sound, else the first inconsistency.
 * @function dict:check
 * @treturn string|nil
 */
static int d_check(lua_State *L) {
  Dict *d = dict_attached(L, dict_check1(L));
  char msg[200];
  int bad;

  lock_or_raise(L, d);
  bad = dict_check(d, msg, sizeof msg);
  dict_unlock(d);
  if (!bad)
    return 0;

  lua_pushstring(L, msg);
  return 1;
}

/***
 * The segment holding the dictionary.
 * @function dict:segment
 * @treturn segment
 */
static int d_segment(lua_State *L) {
  dict_check1(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int d_gc(lua_State *L) {
  Dict *d = dict_check1(L);

  free(d->buf);
  d->buf = NULL;
  d->bufsize = 0;
  return 0;
}

static int d_tostring(lua_State *L) {
  Dict *d = dict_check1(L);

  lua_pushfstring(L, "%s (segment %d, offset %I, %I bytes)", DICT_TNAME,
                  d->seg->id, (lua_Integer)d->off, (lua_Integer)d->region);
  return 1;
}

/* ---- construction -------------------------------------------------------- */

static Dict *dict_push(lua_State *L, Segment *s, size_t off) {
  Dict *d = (Dict *)shmL_newhandle(L, sizeof *d);

  d->tag = &dict_tag;
  d->seg = s;
  d->off = off;
  d->stripe = (uint32_t)getpid();
  d->lock_seconds = DICT_LOCK_SECONDS;
  return d;
}

/* The constructors' options table at arg (checked before anything else is
 * done): lock_timeout, the seconds a writer waits for the lock. */
static double dict_optlock(lua_State *L, int arg) {
  static const char *const names[] = {"lock_timeout", NULL};
  double seconds = DICT_LOCK_SECONDS;

  if (!lua_isnoneornil(L, arg)) {
    shmL_checkopts(L, arg, names);
    shmL_optfield_seconds(L, arg, "lock_timeout", &seconds);
  }
  return seconds;
}

/* dict_new(seg [, off [, size]] [, opts]): opts is the first table */
static int d_new(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  int opts = lua_istable(L, 2) ? 2 : lua_istable(L, 3) ? 3 : 4;
  size_t off = (opts == 2 || lua_isnoneornil(L, 2))
                   ? 0
                   : shmL_checkaligned(L, 2, s, 0, DICT_ALIGN);
  size_t region = opts == 4 ? shmL_optregion(L, 3, s, off) : s->size - off;
  double lock_seconds = dict_optlock(L, opts);
  Dict *d;

  if (region > UINT32_MAX - 8u)
    region = UINT32_MAX - 8u; /* offsets in the region are 32-bit */

  d = dict_push(L, s, off);
  d->lock_seconds = lock_seconds;
  if (dict_layout(d, region) != 0)
    luaL_argerror(L, opts == 4 && !lua_isnoneornil(L, 3) ? 3 : 2,
                  lua_pushfstring(L, "a dictionary needs at least %d bytes",
                                  (int)DICT_MIN_REGION));

  dict_attached(L, d); /* the allocation may have run a finalizer */
  d->stripe %= d->nstripes;
  dict_format(d);
  return 1;
}

/* dict_open(seg [, off] [, opts]): opts is the first table */
static int d_open(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  int opts = lua_istable(L, 2) ? 2 : 3;
  size_t off = (opts == 2 || lua_isnoneornil(L, 2))
                   ? 0
                   : shmL_checkaligned(L, 2, s, 0, DICT_ALIGN);
  double lock_seconds = dict_optlock(L, opts);
  const char *why;
  Dict *d;

  d = dict_push(L, s, off);
  d->lock_seconds = lock_seconds;
  dict_attached(L, d);
  if (s->size - off < DICT_HEADER)
    luaL_argerror(L, 2, "no dictionary here (region too small)");

  why = dict_validate_header(d, dict_header(d), s->size - off);
  if (why != NULL)
    luaL_argerror(L, 2, why);

  d->stripe %= d->nstripes;
  return 1;
}

static const luaL_Reg dict_meth[] = {
    {"get", d_get},         {"get_stale", d_get_stale},
    {"set", d_set},         {"safe_set", d_safe_set},
    {"add", d_add},         {"safe_add", d_safe_add},
    {"replace", d_replace}, {"delete", d_delete},
    {"incr", d_incr},       {"lpush", d_lpush},
    {"rpush", d_rpush},     {"lpop", d_lpop},
    {"rpop", d_rpop},       {"llen", d_llen},
    {"ttl", d_ttl},         {"expire", d_expire},
    {"flush_all", d_flush_all}, {"flush_expired", d_flush_expired},
    {"get_keys", d_get_keys}, {"keys", d_keys},
    {"capacity", d_capacity}, {"free_space", d_free_space},
    {"cas", d_cas},         {"version", d_version},
    {"wait", d_wait},       {"stats", d_stats},
    {"check", d_check},     {"segment", d_segment},
    {NULL, NULL}};

static const luaL_Reg dict_metameth[] = {
    {"__gc", d_gc}, {"__tostring", d_tostring}, {NULL, NULL}};

/* With the module table at -2 and the segment metatable at -1. */
void dict_open_module(lua_State *L) {
  lua_pushvalue(L, -1); /* upvalue 1: the segment metatable */
  luaL_newmetatable(L, DICT_TNAME); /* upvalue 2 */
  luaL_setfuncs(L, dict_metameth, 0);
  luaL_newlib(L, dict_meth);
  lua_pushvalue(L, -1);
  lua_setfield(L, -6, "dict_methods"); /* for the Lua part (pairs) */
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, d_new, 2);
  lua_setfield(L, -5, "dict_new");
  lua_pushcclosure(L, d_open, 2);
  lua_setfield(L, -3, "dict_open");

  lua_pushinteger(L, DICT_MIN_REGION); /* dict.lua's MIN_SIZE */
  lua_setfield(L, -3, "DICT_MIN_SIZE");
}
