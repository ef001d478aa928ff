/*
 * seg:pack(fmt, off, ...) and seg:unpack(fmt, off): the format language of
 * Lua 5.4's string.pack/string.unpack (manual 6.4.2), read and written in
 * place.  Alignment ('!', 'X') is relative to the segment start.
 *
 * pack works in two passes: the first checks every value and computes where
 * each item goes, so that nothing is written unless the whole call succeeds;
 * the second writes.  No intermediate Lua string.
 *
 * Fast path of pack: a format of at most MAXITEMS items (options other than
 * spaces, '<', '>', '=' and '!') without errors is parsed once into an array
 * on the C stack; each value is converted once, in the first pass, and
 * written from that conversion in the second.  Any other format (longer, or
 * with an error anywhere) takes the slow path, which parses in each pass and
 * so raises the first error in format order, interleaved with value and
 * bounds errors exactly as string.pack would.  Both paths share the option
 * reader, the value checks and the writers.
 *
 * unpack reads in one pass, parsing as it goes.  The parser and the readers
 * are inlined into the loops.  Byte order is handled as lstrlib.c does
 * (packint, unpackint, copywithendian), except that a whole lua_Integer is
 * copied as its bytes.
 *
 * Why two paths: with one (each pass parsing as it goes, the write reading
 * the values again), W8's seg:pack("<i8") took 1058 instructions a call
 * against 985 with the fast path (callgrind, bench/profile.sh pack: +7.4%,
 * more than the 5% allowed; bench/NOTES.md).
 *
 * The channel (channel.c: ch:sendpack, ch:recvunpack) uses the same code
 * through pack.h: shm_packcheck (pass 1: check, convert, measure),
 * shm_packwrite (pass 2: write at any address, positions and alignment
 * relative to a given start), shm_unpack (read from a byte buffer of a
 * given length, mismatches returned rather than raised, so that each
 * caller words its own error) and shm_fmtcheck.  seg:pack and seg:unpack
 * inline the same static functions (pack_check, pack_write,
 * unpack_values), so they pay no extra call.
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
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "sysvshm.h"

/* The parser and the per-item readers are inlined into the loops that use
 * them, where the Format state lives in registers. */
#if defined(__GNUC__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static inline
#endif

#define MAXINTSIZE 16                     /* as string.pack: i1..i16 */
#define SZINT ((int)sizeof(lua_Integer))

/* Items of pack's fast path (on the C stack: 16 items, 16 values) */
#define MAXITEMS SHM_PACK_ITEMS

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

/* What is wrong with a format (the messages are in fmt_raise). */
typedef enum FmtError {
  E_NONE,
  E_INTSIZE, /* integral size out of limits (errval: the size) */
  E_CSIZE,   /* 'c' without a size */
  E_OPTION,  /* unknown option (errval: the character) */
  E_XNEXT,   /* 'X' not followed by an option with a size */
  E_ALIGN    /* alignment not a power of 2 */
} FmtError;

typedef struct Format {
  const char *p; /* next option */
  int little;    /* current endianness */
  int maxalign;  /* current '!' limit */
  FmtError err;  /* of the last option read; the reading stops there */
  int errval;
} Format;

/* One parsed option of the fast path, and a value of pack converted once
 * (in pack.h, so that callers keep a ShmPacker on their stack). */
typedef ShmPackItem Item;
typedef ShmPackValue Value;

HOT int native_little(void) {
  const union {
    int i;
    char c;
  } u = {1};
  return u.c;
}

struct maxalign_probe {
  char c;
  union {
    double d;
    void *p;
    lua_Integer i;
    lua_Number n;
  } u;
};

#define DEFMAXALIGN ((int)offsetof(struct maxalign_probe, u))

HOT void fmt_init(Format *f, const char *fmt) {
  f->p = fmt;
  f->little = native_little();
  f->maxalign = 1;
  f->err = E_NONE;
  f->errval = 0;
}

HOT int isdigitc(int c) { return c >= '0' && c <= '9'; }

/* A decimal count after an option, or def when there is none; stops
 * before it could overflow an int (as string.pack does). */
HOT int readcount(Format *f, int def) {
  int n = 0;

  if (!isdigitc(*f->p))
    return def;

  do {
    n = n * 10 + (*f->p++ - '0');
  } while (isdigitc(*f->p) && n <= (INT_MAX - 9) / 10);

  return n;
}

HOT int readintsize(Format *f, int def) {
  int n = readcount(f, def);

  if (n > MAXINTSIZE || n <= 0) {
    f->err = E_INTSIZE;
    f->errval = n;
  }

  return n;
}

/* One option: its kind and size (0 for the variable part of s and z).  On
 * an error, f->err is set and the result is meaningless. */
HOT Kind fmt_option(Format *f, int *size) {
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
      f->err = E_CSIZE;
    return K_CHAR;
  case 'z': return K_ZSTR;
  case 'x': *size = 1; return K_PADDING;
  case 'X': return K_PADALIGN;
  case ' ': return K_NOP;
  case '<': f->little = 1; return K_NOP;
  case '>': f->little = 0; return K_NOP;
  case '=': f->little = native_little(); return K_NOP;
  case '!': f->maxalign = readintsize(f, DEFMAXALIGN); return K_NOP;
  default:
    f->err = E_OPTION;
    f->errval = opt;
    return K_NOP;
  }
}

/* The next option, its size and the alignment it needs (a power of 2, 1 for
 * none).  On an error, f->err is set and the results are meaningless. */
HOT Kind fmt_item(Format *f, int *size, int *align) {
  Kind k = fmt_option(f, size);
  int a = *size;

  if (f->err != E_NONE)
    return k;

  if (k == K_PADALIGN) { /* 'X' aligns like the option after it */
    if (*f->p == '\0') {
      f->err = E_XNEXT;
      return k;
    }
    if (fmt_option(f, &a) == K_CHAR || a == 0) {
      if (f->err == E_NONE) /* the next option's own error comes first */
        f->err = E_XNEXT;
      return k;
    }
    if (f->err != E_NONE)
      return k;
  }

  *align = 1;
  if (a > 1 && k != K_CHAR) {
    if (a > f->maxalign)
      a = f->maxalign;

    if ((a & (a - 1)) != 0) {
      f->err = E_ALIGN;
      return k;
    }
    *align = a;
  }

  return k;
}

/* Raises (never returns: declared so, the loops that call it keep less
 * state alive). */
SHM_NORETURN static void fmt_raise(lua_State *L, FmtError err, int errval) {
  switch (err) {
  case E_INTSIZE:
    luaL_error(L, "integral size (%d) out of limits [1,%d]", errval,
               MAXINTSIZE);
    break;
  case E_CSIZE:
    luaL_error(L, "missing size for format option 'c'");
    break;
  case E_OPTION:
    luaL_error(L, "invalid format option '%c'", errval);
    break;
  case E_XNEXT:
    luaL_argerror(L, ARG_FMT, "invalid next option for option 'X'");
    break;
  default:
    luaL_argerror(L, ARG_FMT, "format asks for alignment not power of 2");
    break;
  }
  abort(); /* not reached: each raises */
}

/* The padding before an item of alignment mask amask at offset pos. */
HOT size_t padding(size_t pos, size_t amask) {
  return (0 - pos) & amask;
}

/* Slow path: the next option, with the padding it needs at absolute offset
 * pos; raises on a bad option. */
static Kind fmt_next(lua_State *L, Format *f, size_t pos, int *size,
                     size_t *pad) {
  int align = 1;
  Kind k = fmt_item(f, size, &align);

  if (f->err != E_NONE)
    fmt_raise(L, f->err, f->errval);

  *pad = padding(pos, (size_t)align - 1);
  return k;
}

/* Fast path: the whole format into items (spaces, endianness and '!' leave
 * none); -1 when it has more than MAXITEMS items or any error. */
HOT int fmt_parse(const char *fmt, Item *items) {
  Format f;
  int n = 0;

  fmt_init(&f, fmt);
  while (*f.p != '\0') {
    int size, align;
    Kind k = fmt_item(&f, &size, &align);

    if (f.err != E_NONE)
      return -1;

    if (k == K_NOP)
      continue;

    if (n == MAXITEMS)
      return -1;

    items[n].kind = (unsigned char)k;
    items[n].little = (unsigned char)f.little;
    items[n].amask = (unsigned char)(align - 1);
    items[n].size = size;
    n++;
  }

  return n;
}

/* ---- byte order (as lstrlib.c) ------------------------------------------ */

/* size bytes from src to dst, reversed unless little is the host's order
 * (a float, double, lua_Number or lua_Integer to or from its bytes). */
HOT void copy_order(unsigned char *dst, const unsigned char *src, int size,
                    int little) {
  if (little == native_little()) {
    memcpy(dst, src, (size_t)size);
  } else {
    dst += size - 1;
    while (size-- != 0)
      *(dst--) = *(src++);
  }
}

/* v in size bytes, least significant first for little; beyond the size of
 * lua_Integer, 0xff bytes for a negative v (a sign extension).  A whole
 * lua_Integer is copied as its bytes: lstrlib's byte loop cost W8's
 * seg:pack("<i8") 79 more instructions a call (callgrind), and its unpack
 * 76. */
HOT void packint(unsigned char *dst, lua_Unsigned v, int little, int size,
                 int negative) {
  int i;

  if (size == SZINT) {
    copy_order(dst, (const unsigned char *)&v, SZINT, little);
    return;
  }

  dst[little ? 0 : size - 1] = (unsigned char)(v & 0xff);
  for (i = 1; i < size; i++) {
    v >>= 8;
    dst[little ? i : size - 1 - i] = (unsigned char)(v & 0xff);
  }

  if (negative && size > SZINT)
    for (i = SZINT; i < size; i++)
      dst[little ? i : size - 1 - i] = 0xff;
}

/* A double to float without undefined behaviour: values beyond float's range
 * become infinities, as an IEEE conversion rounds them. */
HOT float to_float(lua_Number n) {
  const lua_Number limit = (lua_Number)FLT_MAX + 0x1p103; /* half an ulp */

  if (n >= limit)
    return (float)HUGE_VAL;

  if (n <= -limit)
    return -(float)HUGE_VAL;

  return (float)n;
}

/* ---- pack ---------------------------------------------------------------- */

/* luaL_checkinteger, luaL_checknumber and luaL_checklstring without the
 * call through lauxlib, with the same conversions and messages. */
static int arg_typeerror(lua_State *L, int arg, int tag) {
  return luaL_typeerror(L, arg, lua_typename(L, tag));
}

HOT lua_Integer check_integer(lua_State *L, int arg) {
  int isnum;
  lua_Integer n = lua_tointegerx(L, arg, &isnum);

  if (!isnum) {
    if (lua_isnumber(L, arg))
      luaL_argerror(L, arg, "number has no integer representation");
    else
      arg_typeerror(L, arg, LUA_TNUMBER);
  }
  return n;
}

HOT lua_Number check_number(lua_State *L, int arg) {
  int isnum;
  lua_Number n = lua_tonumberx(L, arg, &isnum);

  if (!isnum)
    arg_typeerror(L, arg, LUA_TNUMBER);
  return n;
}

HOT const char *check_lstring(lua_State *L, int arg, size_t *len) {
  const char *s = lua_tolstring(L, arg, len);

  if (s == NULL)
    arg_typeerror(L, arg, LUA_TSTRING);
  return s;
}

/* Check and convert the value for option k (size bytes) at argument arg
 * into v; return the number of variable bytes it adds (string bodies). */
HOT size_t check_value(lua_State *L, Kind k, int size, int arg, Value *v) {
  switch (k) {
  case K_INT: {
    lua_Integer n = check_integer(L, arg);

    if (size < SZINT) {
      lua_Integer lim = (lua_Integer)1 << (size * 8 - 1);

      luaL_argcheck(L, -lim <= n && n < lim, arg, "integer overflow");
    }
    v->u.i = n;
    return 0;
  }

  case K_UINT: {
    lua_Integer n = check_integer(L, arg);

    if (size < SZINT)
      luaL_argcheck(L, (lua_Unsigned)n < ((lua_Unsigned)1 << (size * 8)), arg,
                    "unsigned overflow");
    v->u.i = n;
    return 0;
  }

  case K_FLOAT:
  case K_NUMBER:
  case K_DOUBLE:
    v->u.n = check_number(L, arg);
    return 0;

  case K_CHAR:
    v->s = check_lstring(L, arg, &v->len);
    luaL_argcheck(L, v->len <= (size_t)size, arg,
                  "string longer than given size");
    return 0;

  case K_STRING:
    v->s = check_lstring(L, arg, &v->len);
    luaL_argcheck(L,
                  size >= (int)sizeof(size_t) ||
                      v->len < ((size_t)1 << (size * 8)),
                  arg, "string length does not fit in given size");
    return v->len;

  case K_ZSTR:
    v->s = check_lstring(L, arg, &v->len);
    luaL_argcheck(L, strlen(v->s) == v->len, arg, "string contains zeros");
    return v->len + 1;

  default:
    return 0;
  }
}

/* The value at arg for option k into v, once check_value accepted it. */
static void load_value(lua_State *L, Kind k, int arg, Value *v) {
  switch (k) {
  case K_INT:
  case K_UINT:
    v->u.i = lua_tointeger(L, arg);
    break;

  case K_FLOAT:
  case K_NUMBER:
  case K_DOUBLE:
    v->u.n = lua_tonumber(L, arg);
    break;

  default: /* the strings */
    v->s = lua_tolstring(L, arg, &v->len);
    break;
  }
}

/* Write the (checked) value v, with the padding pad before it, for option
 * k at dst; return the number of bytes written (padding included). */
HOT size_t put_value(Kind k, int size, int little, const Value *v,
                        size_t pad, unsigned char *dst) {
  if (pad > 0) {
    memset(dst, 0, pad);
    dst += pad;
  }

  switch (k) {
  case K_INT:
  case K_UINT:
    packint(dst, (lua_Unsigned)v->u.i, little, size, k == K_INT && v->u.i < 0);
    break;

  case K_FLOAT: {
    float f = to_float(v->u.n);

    copy_order(dst, (const unsigned char *)&f, (int)sizeof f, little);
    break;
  }

  case K_NUMBER:
    copy_order(dst, (const unsigned char *)&v->u.n, (int)sizeof v->u.n,
               little);
    break;

  case K_DOUBLE: {
    double f = (double)v->u.n;

    copy_order(dst, (const unsigned char *)&f, (int)sizeof f, little);
    break;
  }

  case K_CHAR:
    memcpy(dst, v->s, v->len);
    if (v->len < (size_t)size)
      memset(dst + v->len, 0, (size_t)size - v->len);
    break;

  case K_STRING:
    packint(dst, (lua_Unsigned)v->len, little, size, 0);
    memcpy(dst + size, v->s, v->len);
    return pad + (size_t)size + v->len;

  case K_ZSTR:
    memcpy(dst, v->s, v->len + 1);
    return pad + v->len + 1;

  case K_PADDING:
    dst[0] = 0;
    break;

  default:
    break;
  }

  return pad + (size_t)size;
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

/* The format argument (luaL_checkstring). */
static const char *check_fmt(lua_State *L) {
  return check_lstring(L, ARG_FMT, NULL);
}

/* Pass 1 of the slow path (any format, parsed as it goes): raises the first
 * error in format order, interleaved with the value errors; stops at the
 * first item past limit (see shm_packcheck). */
static int pack_check_slow(lua_State *L, ShmPacker *pk, size_t start,
                           size_t limit, size_t *end) {
  size_t pos = start;
  int arg = pk->arg;
  Format f;

  fmt_init(&f, pk->fmt);
  while (*f.p != '\0') {
    int size;
    size_t pad, need;
    Value v;
    Kind k = fmt_next(L, &f, pos, &size, &pad);

    need = pad + (size_t)size;
    if (takes_value(k))
      need += check_value(L, k, size, arg++, &v);

    if (need > limit - pos) {
      *end = pos;
      return 0;
    }

    pos += need;
  }

  pk->nextarg = arg;
  *end = pos;
  return 1;
}

/* Pass 2 of the slow path: parses again and converts the values again (the
 * conversions cannot fail now: pass 1 made every string argument a string). */
static void pack_write_slow(lua_State *L, const ShmPacker *pk,
                            unsigned char *dst, size_t start) {
  size_t pos = start;
  int arg = pk->arg;
  Format f;

  fmt_init(&f, pk->fmt);
  while (*f.p != '\0') {
    int size;
    size_t pad;
    Value v;
    Kind k = fmt_next(L, &f, pos, &size, &pad);

    if (takes_value(k))
      load_value(L, k, arg++, &v);
    pos += put_value(k, size, f.little, &v, pad, dst + (pos - start));
  }
}

/* shm_packcheck, inlined into seg_pack.  Fast path: the format parsed once
 * into pk->items, each value checked and converted once into pk->vals. */
HOT int pack_check(lua_State *L, ShmPacker *pk, const char *fmt, int arg,
                   size_t start, size_t limit, size_t *end) {
  size_t pos = start;
  int n = fmt_parse(fmt, pk->items);
  int i;

  pk->n = n;
  if (n < 0) { /* the slow path parses and reads the arguments again */
    pk->fmt = fmt;
    pk->arg = arg;
    return pack_check_slow(L, pk, start, limit, end);
  }

  for (i = 0; i < n; i++) {
    const Item *it = &pk->items[i];
    Kind k = (Kind)it->kind;
    size_t need = padding(pos, it->amask) + (size_t)it->size;

    if (takes_value(k))
      need += check_value(L, k, it->size, arg++, &pk->vals[i]);

    if (need > limit - pos) {
      *end = pos;
      return 0;
    }

    pos += need;
  }

  pk->nextarg = arg;
  *end = pos;
  return 1;
}

/* shm_packwrite, inlined into seg_pack. */
HOT void pack_write(lua_State *L, const ShmPacker *pk, unsigned char *dst,
                    size_t start) {
  size_t pos = start;
  int i;

  if (pk->n < 0) {
    pack_write_slow(L, pk, dst, start);
    return;
  }

  for (i = 0; i < pk->n; i++) {
    const Item *it = &pk->items[i];

    pos += put_value((Kind)it->kind, it->size, it->little, &pk->vals[i],
                     padding(pos, it->amask), dst + (pos - start));
  }
}

int shm_packcheck(lua_State *L, ShmPacker *pk, const char *fmt, int arg,
                  size_t start, size_t limit, size_t *end) {
  return pack_check(L, pk, fmt, arg, start, limit, end);
}

void shm_packwrite(lua_State *L, const ShmPacker *pk, unsigned char *dst,
                   size_t start) {
  pack_write(L, pk, dst, start);
}

void shm_fmtcheck(lua_State *L, const char *fmt) {
  Format f;

  fmt_init(&f, fmt);
  while (*f.p != '\0') {
    int size, align;

    fmt_item(&f, &size, &align);
    if (f.err != E_NONE)
      fmt_raise(L, f.err, f.errval);
  }
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
  const char *fmt = check_fmt(L);
  size_t start = shmL_checkoffset(L, ARG_OFF, s);
  size_t end;
  ShmPacker pk;

  if (!pack_check(L, &pk, fmt, ARG_VALUES, start, s->size, &end))
    return too_short(L, s, end);

  /* The check converted the values (a number for a string option becomes
   * a new string, and the format may have been one too): a finalizer run
   * by those allocations may have detached s.  The write makes no Lua
   * call, so the address taken now stays valid. */
  pack_write(L, &pk, seg_addr(L, s) + start, start);
  lua_pushinteger(L, (lua_Integer)end);
  return 1;
}

/* ---- unpack -------------------------------------------------------------- */

/* size bytes at src as an integer (lstrlib.c's unpackint). */
HOT lua_Integer unpackint(lua_State *L, const unsigned char *src, int little,
                          int size, int issigned) {
  lua_Unsigned v = 0;
  int limit = size <= SZINT ? size : SZINT;
  int i;

  if (size == SZINT) { /* a whole lua_Integer: its bytes (see packint) */
    copy_order((unsigned char *)&v, src, SZINT, little);
    return (lua_Integer)v;
  }

  for (i = limit - 1; i >= 0; i--) {
    v <<= 8;
    v |= (lua_Unsigned)src[little ? i : size - 1 - i];
  }

  if (size < SZINT) {
    if (issigned) {
      lua_Unsigned sign = (lua_Unsigned)1 << (size * 8 - 1);

      v = (v ^ sign) - sign;
    }
  } else if (size > SZINT) { /* the extra bytes must be a sign extension */
    unsigned char ext = (issigned && (lua_Integer)v < 0) ? 0xff : 0;

    for (i = limit; i < size; i++)
      if (src[little ? i : size - 1 - i] != ext)
        luaL_error(L, "%d-byte integer does not fit into Lua Integer", size);
  }

  return (lua_Integer)v;
}

/* Read one item at *pos of buf[0..size) (its padding already skipped and
 * its fixed size known to fit), push its value if it has one and move *pos
 * past it; return the number of values pushed.  Calls fail (which does not
 * return) when the bytes do not match. */
HOT int get_value(lua_State *L, const unsigned char *const *bufp,
                  const size_t *sizep, Kind k, int size, int little,
                  size_t *pos, ShmUnpackFail fail, const void *ud) {
  const unsigned char *p = *bufp + *pos;
  int pushed = 1;

  switch (k) {
  case K_INT:
  case K_UINT:
    lua_pushinteger(L, unpackint(L, p, little, size, k == K_INT));
    break;

  case K_FLOAT: {
    float f;

    copy_order((unsigned char *)&f, p, (int)sizeof f, little);
    lua_pushnumber(L, (lua_Number)f);
    break;
  }

  case K_NUMBER: {
    lua_Number f;

    copy_order((unsigned char *)&f, p, (int)sizeof f, little);
    lua_pushnumber(L, f);
    break;
  }

  case K_DOUBLE: {
    double f;

    copy_order((unsigned char *)&f, p, (int)sizeof f, little);
    lua_pushnumber(L, (lua_Number)f);
    break;
  }

  case K_CHAR:
    lua_pushlstring(L, (const char *)p, (size_t)size);
    break;

  case K_STRING: {
    lua_Unsigned len = (lua_Unsigned)unpackint(L, p, little, size, 0);

    if (len > *sizep - *pos - (size_t)size)
      fail(L, SHM_UNPACK_SHORT, *pos, ud);

    lua_pushlstring(L, (const char *)p + size, (size_t)len);
    *pos += (size_t)len;
    break;
  }

  case K_ZSTR: {
    const unsigned char *z = memchr(p, 0, *sizep - *pos);
    size_t len;

    if (z == NULL)
      fail(L, SHM_UNPACK_ZSTR, *pos, ud);

    len = (size_t)(z - p);
    lua_pushlstring(L, (const char *)p, len);
    *pos += len + 1;
    break;
  }

  default:
    pushed = 0; /* no value */
    break;
  }

  *pos += (size_t)size;
  return pushed;
}

/* shm_unpack, inlined into seg_unpack: one pass, parsing as it reads, so
 * that errors come in format order.  The buffer and its size are read
 * through pointers: seg_unpack passes its segment's fields, which the
 * compiler then reloads from the userdata instead of keeping copies on the
 * stack across the Lua calls (14 instructions a call), and which a
 * finalizer run by a push may set to NULL (detach): raises then. */
HOT int unpack_values(lua_State *L, const char *fmt,
                      const unsigned char *const *bufp, const size_t *sizep,
                      size_t *ppos, ShmUnpackFail fail, const void *ud) {
  size_t pos = *ppos;
  int n = 0;
  Format f;

  fmt_init(&f, fmt);
  while (*f.p != '\0') {
    int size, align = 1;
    size_t pad;
    Kind k = fmt_item(&f, &size, &align);

    if (f.err != E_NONE)
      fmt_raise(L, f.err, f.errval);

    pad = padding(pos, (size_t)align - 1);
    if (pad > *sizep - pos || (size_t)size > *sizep - pos - pad)
      fail(L, SHM_UNPACK_SHORT, pos, ud);

    pos += pad;
    if (n >= LUA_MINSTACK - 2) /* a C function starts with LUA_MINSTACK free */
      luaL_checkstack(L, 2, "too many results");

    /* The previous push may have run a finalizer that detached the
     * segment (seg_addr in sysvshm.h); each push reads its bytes before it
     * can run one, so checking before each item is enough. */
    if (SHM_UNLIKELY(*bufp == NULL))
      seg_lostfail(L);

    n += get_value(L, bufp, sizep, k, size, f.little, &pos, fail, ud);
  }

  *ppos = pos;
  return n;
}

int shm_unpack(lua_State *L, const char *fmt, const unsigned char *buf,
               size_t size, size_t *pos, ShmUnpackFail fail, const void *ud) {
  return unpack_values(L, fmt, &buf, &size, pos, fail, ud);
}

/* seg:unpack's answer to bytes that do not match the format. */
SHM_NORETURN static void unpack_fail(lua_State *L, int why, size_t pos,
                                     const void *ud) {
  if (why == SHM_UNPACK_SHORT)
    too_short(L, (const Segment *)ud, pos);
  else
    luaL_argerror(L, ARG_OFF, "unfinished string for format 'z'");
  abort(); /* not reached: both raise */
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
  const char *fmt = check_fmt(L);
  size_t pos = shmL_checkoffset(L, ARG_OFF, s);
  int n = unpack_values(L, fmt, (const unsigned char *const *)&s->addr,
                        &s->size, &pos, unpack_fail, s);

  lua_pushinteger(L, (lua_Integer)pos);
  return n + 1;
}
