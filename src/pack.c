/*
 * seg:pack(fmt, off, ...) and seg:unpack(fmt, off): the format language of
 * Lua 5.4's string.pack/string.unpack (manual 6.4.2), read and written in
 * place.  Alignment ('!', 'X') is relative to the segment start.
 *
 * pack works in two passes over the format: the first checks every value
 * and computes where each item goes, so that nothing is written unless the
 * whole call succeeds; the second writes.  No intermediate Lua string.
 */

/***
 * @module sysvshm
 */

/***
 * Pack and unpack.
 * Segment methods that read and write the format language of
 * `string.pack` in place.
 * @section pack
 */
#include <float.h>
#include <math.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sysvshm.h"

#define MAXINTSIZE 16                     /* as string.pack: i1..i16 */
#define SZINT ((int)sizeof(lua_Integer))

/* the arguments of seg:pack/seg:unpack */
#define ARG_FMT 2
#define ARG_OFF 3
#define ARG_VALUES 4

typedef enum Kind {
  K_INT,      /* signed integer */
  K_UINT,     /* unsigned integer */
  K_FLOAT,    /* C float */
  K_NUMBER,   /* lua_Number */
  K_DOUBLE,   /* C double */
  K_CHAR,     /* fixed-size string */
  K_STRING,   /* string with a length prefix */
  K_ZSTR,     /* zero-terminated string */
  K_PADDING,  /* one zero byte */
  K_PADALIGN, /* alignment only */
  K_NOP       /* endianness, max alignment, spaces */
} Kind;

typedef struct Format {
  lua_State *L;
  const char *p; /* next option */
  int little;    /* current endianness */
  int maxalign;  /* current '!' limit */
} Format;

static int native_little(void) {
  const union {
    int i;
    char c;
  } u = {1};
  return u.c;
}

static void fmt_init(Format *f, lua_State *L, const char *fmt) {
  f->L = L;
  f->p = fmt;
  f->little = native_little();
  f->maxalign = 1;
}

static int isdigitc(int c) { return c >= '0' && c <= '9'; }

/* A decimal count after an option, or def when there is none; stops
 * before it could overflow an int (as string.pack does). */
static int readcount(Format *f, int def) {
  int n = 0;

  if (!isdigitc(*f->p))
    return def;

  do {
    n = n * 10 + (*f->p++ - '0');
  } while (isdigitc(*f->p) && n <= (INT_MAX - 9) / 10);

  return n;
}

static int readintsize(Format *f, int def) {
  int n = readcount(f, def);

  if (n > MAXINTSIZE || n <= 0)
    luaL_error(f->L, "integral size (%d) out of limits [1,%d]", n, MAXINTSIZE);

  return n;
}

/* One option: its kind and size (0 for the variable part of s and z). */
static Kind fmt_option(Format *f, int *size) {
  struct maxalign_probe {
    char c;
    union {
      double d;
      void *p;
      lua_Integer i;
      lua_Number n;
    } u;
  };
  int opt = *f->p++;

  *size = 0;
  switch (opt) {
  case 'b': *size = 1; return K_INT;
  case 'B': *size = 1; return K_UINT;
  case 'h': *size = (int)sizeof(short); return K_INT;
  case 'H': *size = (int)sizeof(short); return K_UINT;
  case 'l': *size = (int)sizeof(long); return K_INT;
  case 'L': *size = (int)sizeof(long); return K_UINT;
  case 'j': *size = (int)sizeof(lua_Integer); return K_INT;
  case 'J': *size = (int)sizeof(lua_Integer); return K_UINT;
  case 'T': *size = (int)sizeof(size_t); return K_UINT;
  case 'f': *size = (int)sizeof(float); return K_FLOAT;
  case 'n': *size = (int)sizeof(lua_Number); return K_NUMBER;
  case 'd': *size = (int)sizeof(double); return K_DOUBLE;
  case 'i': *size = readintsize(f, (int)sizeof(int)); return K_INT;
  case 'I': *size = readintsize(f, (int)sizeof(int)); return K_UINT;
  case 's': *size = readintsize(f, (int)sizeof(size_t)); return K_STRING;
  case 'c':
    *size = readcount(f, -1);
    if (*size == -1)
      luaL_error(f->L, "missing size for format option 'c'");
    return K_CHAR;
  case 'z': return K_ZSTR;
  case 'x': *size = 1; return K_PADDING;
  case 'X': return K_PADALIGN;
  case ' ': return K_NOP;
  case '<': f->little = 1; return K_NOP;
  case '>': f->little = 0; return K_NOP;
  case '=': f->little = native_little(); return K_NOP;
  case '!':
    f->maxalign = readintsize(f, (int)offsetof(struct maxalign_probe, u));
    return K_NOP;
  default:
    luaL_error(f->L, "invalid format option '%c'", opt);
    return K_NOP; /* not reached */
  }
}

/* The next option, with the padding it needs at absolute offset pos. */
static Kind fmt_next(Format *f, size_t pos, int *size, size_t *pad) {
  Kind k = fmt_option(f, size);
  int align = *size;

  if (k == K_PADALIGN) { /* 'X' aligns like the option after it */
    if (*f->p == '\0' || fmt_option(f, &align) == K_CHAR || align == 0)
      luaL_argerror(f->L, ARG_FMT, "invalid next option for option 'X'");
  }

  *pad = 0;
  if (align > 1 && k != K_CHAR) {
    if (align > f->maxalign)
      align = f->maxalign;

    if ((align & (align - 1)) != 0)
      luaL_argerror(f->L, ARG_FMT, "format asks for alignment not power of 2");

    *pad = (size_t)((align - (int)(pos & (size_t)(align - 1))) & (align - 1));
  }

  return k;
}

/* ---- byte order ---------------------------------------------------------- */

static void put_uint(unsigned char *dst, lua_Unsigned v, int little, int size,
                     int negative) {
  int i;

  if (size == SZINT && little == native_little()) { /* the common case */
    memcpy(dst, &v, sizeof v);
    return;
  }

  for (i = 0; i < size; i++) {
    unsigned char byte;

    if (i < SZINT) {
      byte = (unsigned char)(v & 0xff);
      v >>= 8;
    } else {
      byte = negative ? 0xff : 0; /* sign extension beyond lua_Integer */
    }

    dst[little ? i : size - 1 - i] = byte;
  }
}

static void copy_order(unsigned char *dst, const unsigned char *src, int size,
                       int little) {
  int i;

  if (little == native_little()) {
    memcpy(dst, src, (size_t)size);
    return;
  }

  for (i = 0; i < size; i++)
    dst[i] = src[size - 1 - i];
}

/* A double to float without undefined behaviour: values beyond float's range
 * become infinities, as an IEEE conversion rounds them. */
static float to_float(lua_Number n) {
  const lua_Number limit = (lua_Number)FLT_MAX + 0x1p103; /* half an ulp */

  if (n >= limit)
    return (float)HUGE_VAL;

  if (n <= -limit)
    return -(float)HUGE_VAL;

  return (float)n;
}

/* ---- pack ---------------------------------------------------------------- */

/* Check the value for option k (size bytes) at argument arg; return the
 * number of variable bytes it adds (string bodies). */
static size_t check_value(lua_State *L, Kind k, int size, int arg) {
  size_t len;

  switch (k) {
  case K_INT: {
    lua_Integer n = luaL_checkinteger(L, arg);

    if (size < SZINT) {
      lua_Integer lim = (lua_Integer)1 << (size * 8 - 1);

      luaL_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
    }
    return 0;
  }

  case K_UINT: {
    lua_Integer n = luaL_checkinteger(L, arg);

    if (size < SZINT)
      luaL_argcheck(L, (lua_Unsigned)n < ((lua_Unsigned)1 << (size * 8)), arg,
                    "unsigned overflow");
    return 0;
  }

  case K_FLOAT:
  case K_NUMBER:
  case K_DOUBLE:
    (void)luaL_checknumber(L, arg);
    return 0;

  case K_CHAR:
    (void)luaL_checklstring(L, arg, &len);
    luaL_argcheck(L, len <= (size_t)size, arg, "string longer than given size");
    return 0;

  case K_STRING:
    (void)luaL_checklstring(L, arg, &len);
    luaL_argcheck(L,
                  size >= (int)sizeof(size_t) ||
                      len < ((size_t)1 << (size * 8)),
                  arg, "string length does not fit in given size");
    return len;

  case K_ZSTR: {
    const char *s = luaL_checklstring(L, arg, &len);

    luaL_argcheck(L, strlen(s) == len, arg, "string contains zeros");
    return len + 1;
  }

  default:
    return 0;
  }
}

/* Write the (already checked) value at arg for option k into dst; return
 * the number of variable bytes written after the option's fixed size. */
static size_t put_value(lua_State *L, Kind k, int size, int little, int arg,
                      unsigned char *dst) {
  size_t len;
  const char *s;

  switch (k) {
  case K_INT:
  case K_UINT: {
    lua_Integer n = lua_tointeger(L, arg);

    put_uint(dst, (lua_Unsigned)n, little, size, k == K_INT && n < 0);
    break;
  }

  case K_FLOAT: {
    float v = to_float(lua_tonumber(L, arg));

    copy_order(dst, (const unsigned char *)&v, (int)sizeof v, little);
    break;
  }

  case K_NUMBER: {
    lua_Number v = lua_tonumber(L, arg);

    copy_order(dst, (const unsigned char *)&v, (int)sizeof v, little);
    break;
  }

  case K_DOUBLE: {
    double v = (double)lua_tonumber(L, arg);

    copy_order(dst, (const unsigned char *)&v, (int)sizeof v, little);
    break;
  }

  case K_CHAR:
    s = lua_tolstring(L, arg, &len);
    memcpy(dst, s, len);
    memset(dst + len, 0, (size_t)size - len);
    break;

  case K_STRING:
    s = lua_tolstring(L, arg, &len);
    put_uint(dst, (lua_Unsigned)len, little, size, 0);
    memcpy(dst + size, s, len);
    return len;

  case K_ZSTR:
    s = lua_tolstring(L, arg, &len);
    memcpy(dst, s, len + 1);
    return len + 1;

  default:
    break;
  }

  return 0;
}

static int takes_value(Kind k) {
  return k != K_PADDING && k != K_PADALIGN && k != K_NOP;
}

/* "%I bytes at offset %I run past..." for a pack/unpack that does not fit */
static int too_short(lua_State *L, const Segment *s, size_t pos) {
  return luaL_argerror(L, ARG_OFF,
                       lua_pushfstring(L,
                                       "format runs past the end of the "
                                       "segment (item at offset %I, size %I)",
                                       (lua_Integer)pos, (lua_Integer)s->size));
}

/***
 * Pack values into the segment, as string.pack would lay them out.
 * Nothing is written unless every value fits and is valid.
 * @function segment:pack
 * @tparam string fmt a string.pack format
 * @tparam integer off 0-based offset
 * @param ... the values
 * @treturn integer the offset after the last byte written
 * @usage seg:pack("<i4 d z", 0, 42, 1.5, "name")
 */
int seg_pack(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  const char *fmt = luaL_checkstring(L, ARG_FMT);
  size_t start = shmL_checkoffset(L, ARG_OFF, s);
  size_t pos = start;
  int arg = ARG_VALUES;
  Format f;

  /* pass 1: check values and bounds */
  fmt_init(&f, L, fmt);
  while (*f.p != '\0') {
    int size;
    size_t pad, need;
    Kind k = fmt_next(&f, pos, &size, &pad);

    need = pad + (size_t)size;
    if (takes_value(k))
      need += check_value(L, k, size, arg++);

    if (need > s->size - pos)
      return too_short(L, s, pos);

    pos += need;
  }

  /* pass 2: write */
  pos = start;
  arg = ARG_VALUES;
  fmt_init(&f, L, fmt);
  while (*f.p != '\0') {
    int size;
    size_t pad;
    Kind k = fmt_next(&f, pos, &size, &pad);

    memset(s->addr + pos, 0, pad);
    pos += pad;
    if (k == K_PADDING)
      s->addr[pos] = 0;
    else if (takes_value(k))
      pos += put_value(L, k, size, f.little, arg++, s->addr + pos);

    pos += (size_t)size;
  }

  lua_pushinteger(L, (lua_Integer)pos);
  return 1;
}

/* ---- unpack -------------------------------------------------------------- */

static lua_Integer get_int(lua_State *L, const unsigned char *src, int little,
                           int size, int issigned) {
  lua_Unsigned v = 0;
  int used = size <= SZINT ? size : SZINT;
  int i;

  if (size == SZINT && little == native_little()) { /* the common case */
    lua_Integer n;

    memcpy(&n, src, sizeof n);
    return n;
  }

  for (i = used - 1; i >= 0; i--)
    v = (v << 8) | src[little ? i : size - 1 - i];

  if (size < SZINT) {
    if (issigned) {
      lua_Unsigned sign = (lua_Unsigned)1 << (size * 8 - 1);

      v = (v ^ sign) - sign;
    }
  } else if (size > SZINT) { /* the extra bytes must be a sign extension */
    unsigned char ext = (issigned && (lua_Integer)v < 0) ? 0xff : 0;

    for (i = used; i < size; i++)
      if (src[little ? i : size - 1 - i] != ext)
        luaL_error(L, "%d-byte integer does not fit into Lua Integer", size);
  }

  return (lua_Integer)v;
}

/***
 * Unpack values from the segment, as string.unpack would.
 * @function segment:unpack
 * @tparam string fmt a string.unpack format
 * @tparam integer off 0-based offset
 * @return the values, then the offset after the last byte read
 * @usage local n, x, name, nextoff = seg:unpack("<i4 d z", 0)
 */
int seg_unpack(lua_State *L) {
  Segment *s = seg_check(L, 1);
  const char *fmt = luaL_checkstring(L, ARG_FMT);
  size_t pos = shmL_checkoffset(L, ARG_OFF, s);
  const unsigned char *base = s->addr;
  int n = 0;
  Format f;

  fmt_init(&f, L, fmt);
  while (*f.p != '\0') {
    int size;
    size_t pad;
    Kind k = fmt_next(&f, pos, &size, &pad);

    if (pad > s->size - pos || (size_t)size > s->size - pos - pad)
      return too_short(L, s, pos);

    pos += pad;
    if (n >= LUA_MINSTACK - 2) /* a C function starts with LUA_MINSTACK free */
      luaL_checkstack(L, 2, "too many results");
    switch (k) {
    case K_INT:
    case K_UINT:
      lua_pushinteger(L, get_int(L, base + pos, f.little, size, k == K_INT));
      break;

    case K_FLOAT: {
      float v;

      copy_order((unsigned char *)&v, base + pos, (int)sizeof v, f.little);
      lua_pushnumber(L, (lua_Number)v);
      break;
    }

    case K_NUMBER: {
      lua_Number v;

      copy_order((unsigned char *)&v, base + pos, (int)sizeof v, f.little);
      lua_pushnumber(L, v);
      break;
    }

    case K_DOUBLE: {
      double v;

      copy_order((unsigned char *)&v, base + pos, (int)sizeof v, f.little);
      lua_pushnumber(L, (lua_Number)v);
      break;
    }

    case K_CHAR:
      lua_pushlstring(L, (const char *)base + pos, (size_t)size);
      break;

    case K_STRING: {
      lua_Unsigned len =
          (lua_Unsigned)get_int(L, base + pos, f.little, size, 0);

      if (len > s->size - pos - (size_t)size)
        return too_short(L, s, pos);

      lua_pushlstring(L, (const char *)base + pos + size, (size_t)len);
      pos += (size_t)len;
      break;
    }

    case K_ZSTR: {
      const unsigned char *z = memchr(base + pos, 0, s->size - pos);
      size_t len;

      if (z == NULL)
        return luaL_argerror(L, ARG_OFF, "unfinished string for format 'z'");

      len = (size_t)(z - (base + pos));
      lua_pushlstring(L, (const char *)base + pos, len);
      pos += len + 1;
      break;
    }

    default:
      n--; /* no value */
      break;
    }

    pos += (size_t)size;
    n++;
  }

  lua_pushinteger(L, (lua_Integer)pos);
  return n + 1;
}
