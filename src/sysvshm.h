/*
 * sysvshm: System V shared memory for Lua 5.4.
 * Shared declarations of the C core (built as the module `sysvshm.core`).
 *
 * Files:
 *   core.c     module functions (ftok, create, open, attach, stat, remove,
 *              the shmget/shmat/shmdt/shmctl mirrors, constants, sleep)
 *   segment.c  the segment userdata, its byte/string methods and the
 *              argument checkers every file uses
 *   pack.c     seg:pack / seg:unpack (string.pack's format, in place)
 *   sync.c     atomics, futex wait/wake, the robust process-shared mutex
 *   channel.c  a multi-process message queue in a segment region
 */
#ifndef SYSVSHM_H
#define SYSVSHM_H

#include <stddef.h>
#include <stdint.h>

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

/* segment.c: the userdata */
Segment *seg_new(lua_State *L);               /* pushes a detached userdata */
Segment *seg_test(lua_State *L, int arg);     /* a segment, or NULL */
Segment *seg_check(lua_State *L, int arg);    /* attached */
Segment *seg_checkw(lua_State *L, int arg);   /* attached and writable */
Segment *seg_checkany(lua_State *L, int arg); /* attached or not */
int seg_detach(Segment *s);                   /* 0, or -1 with errno */
int seg_pushdetach(lua_State *L, Segment *s); /* true, or nil, msg, errno */
void seg_createmeta(lua_State *L);            /* pushes the metatable */
void seg_setmethods(lua_State *L, const luaL_Reg *l); /* into the metatable's __index,
                                                          metatable on the stack top */

/* segment.c: argument checkers shared by all files */
lua_Integer shmL_checkint(lua_State *L, int arg);
lua_Number shmL_checknumber(lua_State *L, int arg);
lua_Integer shmL_optint(lua_State *L, int arg, lua_Integer def);
size_t shmL_checkoffset(lua_State *L, int arg, const Segment *s);
void shmL_checkrange(lua_State *L, int arg, const Segment *s, size_t off,
                     size_t len);
int shmL_pusherror(lua_State *L, const char *what); /* nil, "what: strerror", errno */

/* pack.c */
int seg_pack(lua_State *L);
int seg_unpack(lua_State *L);

/* sync.c: with the module table at -2 and the segment metatable at -1 */
void sync_open(lua_State *L);

/* sync.c: helpers for blocking calls (channel.c) */
struct timespec;
size_t shmL_checkaligned(lua_State *L, int arg, const Segment *s, size_t width,
                         size_t align);
int sync_opttimeout(lua_State *L, int arg, double *seconds); /* 0: for ever */
void sync_deadline(struct timespec *ts, double seconds);     /* monotonic */
int sync_futexwait(lua_State *L, uint32_t *word, uint32_t expected,
                   const struct timespec *deadline); /* 1 woken, 0 timeout,
                                                          2 signal, -1 */
int sync_futexwake(uint32_t *word, int n);
int sync_mutexinit(void *m, int errorcheck); /* a pthread_mutex_t: robust,
                                                 process-shared; 0 or errno */

/* channel.c: with the module table at -2 and the segment metatable at -1 */
void channel_open(lua_State *L);

#endif
