/*
 * pack.c's interface: seg:pack/seg:unpack (registered by segment.c) and the
 * format language of string.pack (Lua manual 6.4.2) that the channel's
 * sendpack/recvunpack (channel.c) share.  The format is argument 2 of every
 * caller, which format errors name.  Positions are absolute and alignment
 * ('!', 'X') is relative to position 0: the segment start for seg:pack, the
 * message start for the channel (as string.pack aligns relative to the
 * start of the string it builds).
 */
#ifndef SYSVSHM_PACK_H
#define SYSVSHM_PACK_H

#include "sysvshm.h"

int seg_pack(lua_State *L);
int seg_unpack(lua_State *L);

#define SHM_PACK_ITEMS 16 /* items of pack's fast path (see pack.c) */

typedef struct ShmPackItem { /* one parsed option of the fast path */
  unsigned char kind;   /* pack.c's Kind, not K_NOP */
  unsigned char little; /* byte order */
  unsigned char amask;  /* alignment - 1 (0: none); alignment is <= 16 */
  int size;             /* fixed size (0 for the variable part of s, z) */
} ShmPackItem;

typedef struct ShmPackValue { /* a value of pack, converted once */
  union {
    lua_Integer i;
    lua_Number n;
  } u;
  const char *s; /* strings: the argument's bytes (alive on the stack) */
  size_t len;
} ShmPackValue;

/* One pack between its check and its write, on the caller's C stack. */
typedef struct ShmPacker {
  const char *fmt;
  int arg;     /* the first value's argument */
  int nextarg; /* the argument after the last value (once checked) */
  int n;       /* items of the fast path; -1: slow path (parses again) */
  ShmPackItem items[SHM_PACK_ITEMS];
  ShmPackValue vals[SHM_PACK_ITEMS];
} ShmPacker;

/* Check fmt and the values at arguments arg.. for packing from position
 * start, writing nothing.  Raises on a bad format or value, in format order
 * as string.pack does.  Returns 1 with *end the position after the last
 * byte, or 0 with *end the position of the first item that would run past
 * limit (the items after it are not checked).  start <= limit.  It runs Lua
 * code (a number for a string option is converted to a new string, which
 * can run a finalizer): take the destination address after it (seg_addr). */
int shm_packcheck(lua_State *L, ShmPacker *pk, const char *fmt, int arg,
                  size_t start, size_t limit, size_t *end);

/* Write what shm_packcheck accepted, position start at dst[0].  Makes no
 * Lua call that can raise (the values were converted by the check), so it
 * may run with a lock held. */
void shm_packwrite(lua_State *L, const ShmPacker *pk, unsigned char *dst,
                   size_t start);

/* Raise on the first error of fmt, if any; reads no value. */
void shm_fmtcheck(lua_State *L, const char *fmt);

/* Push the values of fmt read from buf[*pos..size), position 0 at buf[0]
 * (buf not NULL: a NULL buffer raises "segment detached during the call");
 * return how many were pushed, with *pos after the last byte read.  Raises
 * on a format error and on a 9- to 16-byte integer that does not fit a
 * lua_Integer; when the bytes do not match the format, calls fail (which
 * must raise) with SHM_UNPACK_SHORT (the item at pos runs past size) or
 * SHM_UNPACK_ZSTR (no zero after pos for 'z'), and ud, so that each caller
 * words its own error; the values before it are pushed then. */
#define SHM_UNPACK_SHORT 1
#define SHM_UNPACK_ZSTR 2
typedef void (*ShmUnpackFail)(lua_State *L, int why, size_t pos,
                              const void *ud);
int shm_unpack(lua_State *L, const char *fmt, const unsigned char *buf,
               size_t size, size_t *pos, ShmUnpackFail fail, const void *ud);

#endif
