/*
 * The segment userdata: an attachment of a System V shared memory segment,
 * with 0-based, bounds-checked byte and string access.  Every method goes
 * through seg_check/seg_checkw/seg_checkany, which reject anything that is
 * not an attached segment before any memory is touched.
 *
 * A finalizer may detach a segment whenever the collector runs, that is at
 * any allocation.  The methods here make none between their check and
 * their last access to the memory (arguments are checked without
 * converting numbers to strings or calling metamethods, and a push that
 * allocates copies the bytes before it can collect); pack.c's, which must
 * allocate as they go, take the address again through seg_addr.
 */

/***
 * @module sysvshm
 */

/***
 * Segment methods.
 * An attached segment, from `attach` or `shmat`: bytes and strings at
 * 0-based, bounds-checked offsets.
 * @section segment
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>

#include <sys/types.h>

#include "pack.h"
#include "sysvshm.h"

/* ---- argument checkers -------------------------------------------------- */

/* shmL_checkint (sysvshm.h) when the argument is not an integer: a float
 * with an integer value, or an error. */
lua_Integer shmL_checkint_slow(lua_State *L, int arg) {
  int isnum;
  lua_Integer v;

  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_typeerror(L, arg, "integer");

  v = lua_tointegerx(L, arg, &isnum);
  if (!isnum)
    luaL_argerror(L, arg, "number has no integer representation");

  return v;
}

/* A number argument, strictly (no string conversion), as shmL_checkint. */
lua_Number shmL_checknumber(lua_State *L, int arg) {
  if (lua_type(L, arg) != LUA_TNUMBER)
    luaL_typeerror(L, arg, "number");

  return lua_tonumber(L, arg);
}

lua_Integer shmL_optint(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : shmL_checkint(L, arg);
}

/* The errors of shmL_checkoffset and shmL_checkrange (sysvshm.h). */
void shmL_offsetfail(lua_State *L, int arg, lua_Integer v, const Segment *s) {
  luaL_argerror(L, arg,
                lua_pushfstring(L, "offset %I out of range (segment size %I)",
                                v, (lua_Integer)s->size));
  /* not reached: luaL_argerror raises (abort() tells the compiler so) */
  /* cppcheck-suppress unreachableCode */
  abort();
}

void shmL_rangefail(lua_State *L, int arg, const Segment *s, size_t off,
                    size_t len) {
  luaL_argerror(L, arg,
                lua_pushfstring(L,
                                "%I bytes at offset %I run past the end of "
                                "the segment (size %I)",
                                (lua_Integer)len, (lua_Integer)off,
                                (lua_Integer)s->size));
  /* cppcheck-suppress unreachableCode */
  abort(); /* not reached */
}

/* An optional length at arg: a non-negative integer that fits in s from
 * off, or the rest of s when it is none or nil.  what names it in the
 * error ("length", "size"). */
static size_t optlength(lua_State *L, int arg, const Segment *s, size_t off,
                        const char *what) {
  lua_Integer n;

  if (lua_isnoneornil(L, arg))
    return s->size - off;

  n = shmL_checkint(L, arg);
  if (n < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must not be negative", what));

  shmL_checkrange(L, arg, s, off, (size_t)n);
  return (size_t)n;
}

/* The size argument of a region's constructor (channel_new, dict_new). */
size_t shmL_optregion(lua_State *L, int arg, const Segment *s, size_t off) {
  return optlength(L, arg, s, off, "size");
}

/* A byte value: an integer 0..255 or a one-character string. */
static unsigned char checkbyte(lua_State *L, int arg) {
  lua_Integer v;

  if (lua_type(L, arg) == LUA_TSTRING) {
    size_t n;
    const char *p = lua_tolstring(L, arg, &n);

    if (n != 1)
      luaL_argerror(L, arg, "string must have exactly one character");

    return (unsigned char)p[0];
  }

  v = shmL_checkint(L, arg);
  if ((lua_Unsigned)v > UCHAR_MAX)
    luaL_argerror(L, arg, "byte value out of range 0..255");

  return (unsigned char)v;
}

/* An options table: nil (or none), or a table whose keys are all in
 * `names` (NULL-terminated).  Anything else raises: a typo such as
 * {readOnly = true} or {opne = true} is an error naming the key and the
 * options there are, never silently ignored.  Only the table's own keys
 * count (lua_next, no metamethods). */
void shmL_checkopts(lua_State *L, int arg, const char *const names[]) {
  if (lua_isnoneornil(L, arg))
    return;

  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg) != 0) {
    int i, known = 0;

    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);

      for (i = 0; names[i] != NULL; i++)
        known |= strcmp(k, names[i]) == 0;
    }

    if (!known) {
      /* the key as text, on the stack (it stays valid below the buffer) */
      const char *k = luaL_tolstring(L, -1, NULL);
      luaL_Buffer b;

      luaL_buffinit(L, &b);
      luaL_addstring(&b, "unknown option '");
      luaL_addstring(&b, k);
      luaL_addstring(&b, "'; the options are: ");
      for (i = 0; names[i] != NULL; i++) {
        if (i > 0)
          luaL_addstring(&b, ", ");
        luaL_addstring(&b, names[i]);
      }
      luaL_pushresult(&b);
      luaL_argerror(L, arg, lua_tostring(L, -1));
    }
  }
}

/* A zeroed handle (mutex, channel, dictionary) of size bytes for the
 * segment at argument 1: its metatable is the constructor's upvalue 2
 * (each carries it there), and the segment is kept alive in its user value
 * for as long as the handle lives. */
void *shmL_newhandle(lua_State *L, size_t size) {
  void *h = lua_newuserdatauv(L, size, 1);

  memset(h, 0, size);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return h;
}

/* A System V key: any 32-bit value, signed (as key_t and ftok give it) or
 * unsigned (as ipcs prints it, 0xdeadbeef). */
key_t shmL_checkkey(lua_State *L, int arg) {
  lua_Integer v = shmL_checkint(L, arg);

  if (v < INT32_MIN || v > (lua_Integer)UINT32_MAX)
    luaL_argerror(L, arg, "key out of 32-bit range");

  return (key_t)(int32_t)(uint32_t)v;
}

/* Permission bits, 0..0777 (v read from argument or option arg). */
int shmL_checkmode(lua_State *L, int arg, lua_Integer v) {
  if (v < 0 || v > 0777)
    luaL_argerror(L, arg, "mode must be within 0..0777 (permission bits)");

  return (int)v;
}

/* Field k of the options table at arg (none or nil: no table), read raw
 * (no metamethod runs): its type, with the value pushed, or LUA_TNIL with
 * nothing pushed when it is absent. */
static int optfield(lua_State *L, int arg, const char *k) {
  int t;

  if (lua_isnoneornil(L, arg))
    return LUA_TNIL;

  lua_pushstring(L, k);
  t = lua_rawget(L, arg);
  if (t == LUA_TNIL)
    lua_pop(L, 1);
  return t;
}

/* Integer field k of the options table at arg: 0 when absent, 1 with *v
 * set; raises when it is not an integer. */
int shmL_optfield_int(lua_State *L, int arg, const char *k, lua_Integer *v) {
  int t = optfield(L, arg, k), isnum;

  if (t == LUA_TNIL)
    return 0;

  *v = lua_tointegerx(L, -1, &isnum);
  if (t != LUA_TNUMBER || !isnum)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be an integer", k));

  lua_pop(L, 1);
  return 1;
}

/* Seconds in field k of the options table at arg: 1 with *v when it is
 * there (a number greater than 0, at most 1e9), 0 when absent. */
int shmL_optfield_seconds(lua_State *L, int arg, const char *k, double *v) {
  int t = optfield(L, arg, k);

  if (t == LUA_TNIL)
    return 0;

  *v = (double)lua_tonumber(L, -1);
  if (t != LUA_TNUMBER || !(*v > 0 && *v <= 1e9))
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "option '%s' must be a number of seconds "
                                     "greater than 0 (at most 1e9)",
                                  k));

  lua_pop(L, 1);
  return 1;
}

/* Boolean field k of the options table at arg; def when absent. */
int shmL_optfield_bool(lua_State *L, int arg, const char *k, int def) {
  int t = optfield(L, arg, k), v;

  if (t == LUA_TNIL)
    return def;

  if (t != LUA_TBOOLEAN)
    luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be a boolean", k));

  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

int shmL_pusherror(lua_State *L, const char *what) {
  int en = errno; /* calls to the Lua API may change errno */

  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(en));
  lua_pushinteger(L, en);
  return 3;
}

/* ---- the userdata ------------------------------------------------------- */

/* The tag every segment carries (seg_test in sysvshm.h). */
const char seg_tag = 0;

Segment *seg_new(lua_State *L) {
  Segment *s = (Segment *)lua_newuserdatauv(L, sizeof *s, 0);

  s->tag = &seg_tag;
  s->addr = NULL; /* detached until shmat succeeds, so GC is always safe */
  s->size = 0;
  s->id = -1;
  s->readonly = 0;
  s->locks = 0;
  lua_pushvalue(L, SEG_MT_UPVALUE);
  lua_setmetatable(L, -2);
  return s;
}

/* The errors of seg_need (sysvshm.h). */
void seg_argfail(lua_State *L, int arg, int need) {
  Segment *s = seg_test(L, arg);

  if (s == NULL)
    luaL_typeerror(L, arg, SEGMENT_TNAME);
  else if (s->addr == NULL)
    luaL_error(L, "attempt to use a detached segment");
  else if (need >= 2 && s->readonly)
    luaL_error(L, "attempt to write to a read-only segment");
  abort(); /* not reached: called only when a check fails */
}

/* seg_addr (sysvshm.h): a finalizer detached the segment while a method
 * was running. */
void seg_lostfail(lua_State *L) {
  luaL_error(L, "segment detached during the call");
  /* cppcheck-suppress unreachableCode */
  abort(); /* not reached: luaL_error raises */
}

int seg_detach(Segment *s) {
  void *addr = s->addr;

  if (addr == NULL)
    return 0;

  s->addr = NULL;
  return shmdt(addr);
}

/***
 * Size of the segment in bytes (also `#seg`).
 * @function segment:size
 * @treturn integer
 */
static int seg_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)seg_check(L, 1)->size);
  return 1;
}

/***
 * The segment's System V identifier.
 * @function segment:id
 * @treturn integer
 */
static int seg_id(lua_State *L) {
  lua_pushinteger(L, seg_check(L, 1)->id);
  return 1;
}

/***
 * Whether this attachment is read-only.
 * @function segment:readonly
 * @treturn boolean
 */
static int seg_readonly(lua_State *L) {
  lua_pushboolean(L, seg_check(L, 1)->readonly);
  return 1;
}

/***
 * Read bytes.
 * @function segment:read
 * @tparam integer off 0-based offset, 0..#seg
 * @tparam[opt] integer len number of bytes (default: to the end)
 * @treturn string
 */
static int seg_read(lua_State *L) {
  Segment *s = seg_check(L, 1);
  size_t off = shmL_checkoffset(L, 2, s);
  size_t len = optlength(L, 3, s, off, "length");

  lua_pushlstring(L, (const char *)s->addr + off, len);
  return 1;
}

/***
 * Write a string.
 * @function segment:write
 * @tparam integer off 0-based offset
 * @tparam string s the bytes to write; they must fit in the segment
 * @treturn integer off + #s, the next offset
 */
static int seg_write(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  size_t off = shmL_checkoffset(L, 2, s);
  size_t len;
  const char *p;

  if (lua_type(L, 3) != LUA_TSTRING)
    luaL_typeerror(L, 3, "string");

  p = lua_tolstring(L, 3, &len);
  shmL_checkrange(L, 3, s, off, len);
  memcpy(s->addr + off, p, len);
  lua_pushinteger(L, (lua_Integer)(off + len));
  return 1;
}

/***
 * Read one byte.
 * @function segment:byte
 * @tparam integer off 0-based offset, 0..#seg-1
 * @treturn integer 0..255
 */
static int seg_byte(lua_State *L) {
  Segment *s = seg_check(L, 1);
  size_t off = shmL_checkoffset(L, 2, s);

  shmL_checkrange(L, 2, s, off, 1);
  lua_pushinteger(L, s->addr[off]);
  return 1;
}

/***
 * Write one byte.
 * @function segment:setbyte
 * @tparam integer off 0-based offset, 0..#seg-1
 * @tparam integer v 0..255 (or a one-character string)
 */
static int seg_setbyte(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  size_t off = shmL_checkoffset(L, 2, s);
  unsigned char v = checkbyte(L, 3);

  shmL_checkrange(L, 2, s, off, 1);
  s->addr[off] = v;
  return 0;
}

/***
 * The bytes from off up to the first NUL, or to the end of the segment.
 * @function segment:cstring
 * @tparam[opt=0] integer off
 * @treturn string
 */
static int seg_cstring(lua_State *L) {
  Segment *s = seg_check(L, 1);
  size_t off = lua_isnoneornil(L, 2) ? 0 : shmL_checkoffset(L, 2, s);
  const unsigned char *p = s->addr + off;
  const unsigned char *nul = memchr(p, 0, s->size - off);

  size_t len = nul ? (size_t)(nul - p) : s->size - off;
  const char *copy;

  lua_pushlstring(L, (const char *)p, len);

  /* Another process may have stored a NUL between the scan and the copy:
   * the copy is what we return, so cut it at its own first NUL. */
  copy = lua_tolstring(L, -1, &len);
  nul = memchr(copy, 0, len);
  if (nul != NULL)
    lua_pushlstring(L, copy, (size_t)((const char *)nul - copy));

  return 1;
}

/***
 * Set a range of bytes to one value.
 * @function segment:fill
 * @tparam integer v 0..255 (or a one-character string)
 * @tparam[opt=0] integer off
 * @tparam[opt] integer len default: to the end
 */
static int seg_fill(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  unsigned char v = checkbyte(L, 2);
  size_t off = lua_isnoneornil(L, 3) ? 0 : shmL_checkoffset(L, 3, s);
  size_t len = optlength(L, 4, s, off, "length");

  memset(s->addr + off, v, len);
  return 0;
}

/***
 * Detach the segment.  A second call does nothing.  The segment itself
 * stays until removed (see `sysvshm.remove`).
 * @function segment:detach
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string message
 * @treturn[2] integer errno
 */
static int seg_detachm(lua_State *L) {
  return seg_pushdetach(L, seg_checkany(L, 1));
}

/* Detach s for segment:detach and sysvshm.shmdt: true, or the failure. */
int seg_pushdetach(lua_State *L, Segment *s) {
  /* The kernel may write to a held robust mutex when this process exits;
   * it must not find another mapping at that address. */
  if (s->locks > 0)
    luaL_error(L, "cannot detach: a mutex in this segment is locked");

  if (seg_detach(s) != 0)
    return shmL_pusherror(L, "shmdt");

  lua_pushboolean(L, 1);
  return 1;
}

/* __gc and __close: detach, never remove (segments outlive processes).
 * While a mutex in the segment is held through this attachment it stays
 * attached (see seg_detachm); the kernel releases the lock at exit. */
static int seg_gc(lua_State *L) {
  Segment *s = seg_checkany(L, 1);

  if (s->locks == 0)
    (void)seg_detach(s);

  return 0;
}

static int seg_tostring(lua_State *L) {
  Segment *s = seg_checkany(L, 1);

  lua_pushfstring(L, "%s (id %d, %I bytes%s%s)", SEGMENT_TNAME, s->id,
                  (lua_Integer)s->size, s->readonly ? ", read-only" : "",
                  s->addr == NULL ? ", detached" : "");
  return 1;
}

static const luaL_Reg seg_metameth[] = {
    {"__index", NULL}, /* placeholder, set to the method table */
    {"__len", seg_size},
    {"__tostring", seg_tostring},
    {"__gc", seg_gc},
    {"__close", seg_gc},
    {NULL, NULL}};

static const luaL_Reg seg_meth[] = {
    {"size", seg_size},       {"id", seg_id},
    {"readonly", seg_readonly}, {"read", seg_read},
    {"write", seg_write},     {"byte", seg_byte},
    {"setbyte", seg_setbyte}, {"cstring", seg_cstring},
    {"fill", seg_fill},       {"detach", seg_detachm},
    {"pack", seg_pack},       {"unpack", seg_unpack},
    {NULL, NULL}};

void seg_setmethods(lua_State *L, const luaL_Reg *l) {
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, l, 1);
  lua_pop(L, 1);
}

void seg_createmeta(lua_State *L) {
  luaL_newmetatable(L, SEGMENT_TNAME);
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, seg_metameth, 1);
  lua_newtable(L);
  lua_setfield(L, -2, "__index");
  seg_setmethods(L, seg_meth);
}
