/*
 * sysvshm.dict internals shared by dict_store.c (the structure in shared
 * memory) and dict.c (the Lua methods).
 *
 * Region layout (offsets from the region start, native byte order; every
 * offset stored in the region is a u32 from the region start, 0 = none):
 *      0  DictHeader: identity and geometry (written once by new)
 *     64  u64 lock word (lock.c), alone on its line
 *    128  u64 seq: even when stable, odd while a writer changes entries
 *    192  DictState: what the lock holder changes (top, LRU ends, clock,
 *         counters, the compaction journal)
 *    320  wait slots: 16 x {u32 seq, u32 waiters} (d:wait)
 *    512  read stripes: nstripes x 256 bytes (reads to replay into the LRU)
 *         buckets: nbuckets x u32, the head of each hash chain
 *         heap: entries and dead blocks from heap_off up to top, then the
 *         free tail up to heap_end
 *
 * An entry is one block: DictEntry (56 bytes), the key, the value, padded
 * to 8.  A dead block (deleted, replaced, evicted) keeps its size and a
 * DEAD tag until compaction slides the live entries down over it.  The hash
 * chains are the truth: every other piece (top, dead blocks, LRU list,
 * counters) can be rebuilt from them, and is rebuilt by the first process
 * that takes the lock after a holder died (dict_recover).  A chain changes
 * by one aligned store (the commit of every call), after the entry it
 * links was written in full.
 */
#ifndef SYSVSHM_DICT_H
#define SYSVSHM_DICT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sysvshm.h"

#define DICT_MAGIC 0x49445653u /* "SVDI" */
#define DICT_VERSION 1u
#define DICT_ALIGN 64u
#define DICT_MIN_REGION 8192u
#define DICT_HEADER 512u
#define DICT_MAX_KEY 65535u
#define DICT_STRIPE_BYTES 256u
#define DICT_STRIPE_SLOTS 63u /* u32 count, then slots */
#define DICT_WAIT_SLOTS 16u

#define ENTRY_TAG 0x52544e45u /* "ENTR" */
#define DEAD_TAG 0x44414544u  /* "DEAD" */

/* value types */
enum { DV_BOOL = 1, DV_INT, DV_FLOAT, DV_STRING, DV_LIST };

typedef struct DictHeader {
  uint32_t magic, version;
  uint64_t region;
  uint32_t nbuckets, buckets_off;
  uint32_t heap_off, heap_end;
  uint32_t nstripes, stripes_off;
  uint32_t ready; /* 1 once new() has finished (attach waits for it) */
  unsigned char pad0[64 - 44];
  uint64_t lock;
  unsigned char pad1[64 - 8];
  uint64_t seq;
  unsigned char pad2[64 - 8];
} DictHeader;

typedef struct DictState {
  uint32_t top;      /* heap bytes in use (entries and dead blocks) end here */
  uint32_t lru_head; /* most recently used entry */
  uint32_t lru_tail; /* least recently used entry */
  uint32_t reads;    /* a bit per read stripe that may hold reads to replay
                        (set by readers, taken by the lock holder; 0 in
                        dictionaries made before it existed: harmless) */
  uint64_t clock;    /* bumped by every change: entries' versions */
  uint64_t entries;
  uint64_t live;     /* bytes of live entries */
  uint64_t dead;     /* bytes of dead blocks below top */
  uint64_t evictions, expirations, contention, repairs;
  /* compaction journal: a block moving from j_from to j_to, j_len bytes,
   * j_done of them copied (j_op: 0 none, 1 move) */
  uint32_t j_op, j_from, j_to, j_len, j_done, pad2;
} DictState;

typedef struct DictEntry {
  uint32_t size, tag;         /* block size (multiple of 8), ENTRY_TAG */
  uint32_t next, hash;        /* hash chain; hash of the key */
  uint32_t lru_prev, lru_next;
  uint32_t klen, vlen;
  uint8_t vtype, pad[3];
  uint32_t flags;             /* the user's flags */
  int64_t expire;             /* monotonic ms, 0 = never */
  uint64_t version;           /* the clock when it was written */
} DictEntry;

#define ENTRY_HEAD ((uint32_t)sizeof(DictEntry))

typedef char dict_header_check[sizeof(DictHeader) == 192 ? 1 : -1];
typedef char dict_entry_check[sizeof(DictEntry) == 56 ? 1 : -1];
typedef char dict_state_check[sizeof(DictState) <= 128 ? 1 : -1];

#define DICT_STATE_OFF 192u
#define DICT_WAIT_OFF 320u

/* The handle: geometry copied from the header when opened (validated), so
 * that nothing another process writes later can move it. */
typedef struct Dict {
  const void *tag;
  Segment *seg;
  size_t off;       /* region start in the segment */
  uint32_t region;  /* region size */
  uint32_t nbuckets, buckets_off, heap_off, heap_end, nstripes, stripes_off;
  uint32_t stripe;  /* this process's read stripe */
  uint32_t wake;    /* wait slots (bits) to wake after the write section */
  char *buf;        /* values copied out of the region, pushed after */
  size_t bufsize;
  double lock_seconds; /* a writer waits this long for the lock, then raises */
} Dict;

/* A value given by Lua, converted before any lock is taken. */
typedef struct DictValue {
  int type;          /* DV_*, or 0 for nil */
  int64_t i;         /* DV_INT, DV_BOOL (0/1) */
  double n;          /* DV_FLOAT */
  const char *s;     /* DV_STRING bytes, DV_LIST encoded elements */
  size_t len;        /* bytes of s (or 8 / 1 for numbers and booleans) */
} DictValue;

/* A value copied out of the region, into d->buf for strings and lists. */
typedef struct DictOut {
  int type;
  int64_t i;
  double n;
  size_t len;        /* bytes in d->buf */
  uint32_t flags;
  int64_t expire;
  uint64_t version;
  int stale;         /* expired (get_stale) */
} DictOut;

static inline unsigned char *dict_base(const Dict *d) { return d->seg->addr + d->off; }
static inline DictHeader *dict_header(const Dict *d) { return (DictHeader *)(void *)dict_base(d); }
static inline DictState *dict_state(const Dict *d) {
  return (DictState *)(void *)(dict_base(d) + DICT_STATE_OFF);
}

/* The entry at off, or NULL when what is there cannot be one: a misaligned
 * or out-of-heap offset, another tag, lengths that do not fit its size.
 * The header is read once, into *s, and checked there: another process may
 * write over the region at any moment, so callers take every length and
 * offset from *s, never again from the entry.  (Inline: the hot paths call
 * it for every entry they step on.) */
static inline DictEntry *dict_entry(const Dict *d, uint32_t off, DictEntry *s) {
  if (off % 8u != 0 || off < d->heap_off || off > d->heap_end - ENTRY_HEAD)
    return NULL;

  memcpy(s, dict_base(d) + off, sizeof *s);
  if (s->tag != ENTRY_TAG || s->size % 8u != 0 || s->size < ENTRY_HEAD ||
      s->size > d->heap_end - off || s->klen == 0 || s->klen > DICT_MAX_KEY ||
      s->vlen > s->size ||
      (size_t)ENTRY_HEAD + s->klen + s->vlen > s->size)
    return NULL;

  return (DictEntry *)(void *)(dict_base(d) + off);
}

/* results of the store's operations */
enum {
  DR_OK,
  DR_NOTFOUND,
  DR_EXISTS,
  DR_NOMEM,
  DR_NOTNUMBER,
  DR_NOTLIST,
  DR_ISLIST,
  DR_CORRUPT,  /* found and repaired; the call did nothing */
  DR_TIMEOUT,
  DR_INTERRUPTED,
  DR_MISMATCH  /* cas: the value differs */
};

/* dict_store.c */
uint32_t dict_hash(const char *k, size_t n);
int64_t dict_now(void); /* monotonic ms */
int dict_layout(Dict *d, size_t region); /* geometry for a new region; 0 ok */
void dict_format(Dict *d);               /* write an empty dictionary */
const char *dict_validate_header(Dict *d, const DictHeader *h, size_t avail);

/* seconds: how long to wait for a held lock (< 0: for ever) */
int dict_lock(lua_State *L, Dict *d, double seconds);
void dict_unlock(Dict *d);
void dict_repair(Dict *d); /* rebuild from the chains, under the lock */

/* Under the lock.  find: the entry offset for a key (0 if none), *link
 * the offset of the u32 that points to it, *snap (when not NULL) the
 * entry's checked header; expired entries are found too. */
uint32_t dict_find(Dict *d, const char *k, size_t klen, uint32_t h,
                   uint32_t *link, int *corrupt, DictEntry *snap);
/* store key = value (a new entry replacing `old` at `link`, or added);
 * evict: 0 never, 1 as needed (sets *forcible).  DR_OK / DR_NOMEM.
 * link, old, os: what dict_find answered for the key in this lock hold,
 * nothing written since (old 0: none; os NULL: old is checked again), or
 * link 0 to have it looked up. */
int dict_put(Dict *d, const char *k, size_t klen, uint32_t h,
             const DictValue *v, uint32_t flags, int64_t expire, int evict,
             int *forcible, const void *prefix, size_t plen, uint32_t link,
             uint32_t old, const DictEntry *os);
void dict_remove(Dict *d, uint32_t link, uint32_t off); /* unlink and free */
void dict_touch(Dict *d, uint32_t off);                  /* LRU head */
void dict_touch_entry(Dict *d, uint32_t off, DictEntry *e); /* e: indexed */
void dict_bump(Dict *d, uint32_t off);                   /* new version, wake */
void dict_bump_entry(Dict *d, DictEntry *e, const DictEntry *s); /* s: checked */
int dict_copyout(Dict *d, uint32_t off, DictOut *o);     /* into d->buf; 0 ok,
                                                            -1 not an entry,
                                                            -2 no memory */
void dict_write_begin(Dict *d);
void dict_write_end(Dict *d);
int dict_wslot(uint32_t hash);
size_t dict_free_bytes(Dict *d);
size_t dict_largest(Dict *d);
int dict_check(Dict *d, char *msg, size_t msgsize); /* 0 sound */
uint64_t dict_flush_expired(Dict *d, uint64_t max, int all);
void dict_record_read(Dict *d, uint32_t off);

/* Lock-free lookup (seqlock): DR_OK with *o filled, DR_NOTFOUND, or -1
 * when it could not get a stable view (the caller takes the lock). */
int dict_peek(Dict *d, const char *k, size_t klen, uint32_t h, DictOut *o,
              uint32_t *where);

#endif
