/*
 * sysvshm.dict: the structure in shared memory (layout in dict.h).
 *
 * Everything here runs either under the dictionary's lock (the writers'
 * operations, recovery, check) or inside a seqlock read (dict_peek), and
 * makes no Lua call: the caller converts its arguments first and pushes
 * results after.  Every offset and length read from the region is checked
 * before use (dict_entry), every walk is bounded by the number of entries
 * the heap can hold, and an inconsistency found under the lock is repaired
 * by rebuilding from the hash chains (dict_rebuild) and reported.
 *
 * Memory.  Entries are allocated from the free tail of the heap (a bump
 * pointer, `top`).  A freed entry becomes a dead block; when the tail is
 * too small but dead blocks and tail together are large enough, the live
 * entries slide down over the dead blocks (compact), so the free space
 * reported is all usable: no "no memory" from fragmentation.  A slide moves
 * each entry with a forward copy in steps no longer than the distance it
 * moves, journaled step by step, so that a process killed in the middle
 * leaves a copy the next lock holder can finish.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dict.h"

/* ---- small helpers ------------------------------------------------------- */

uint32_t dict_hash(const char *k, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n, w;

  while (n >= 8) {
    memcpy(&w, k, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    k += 8;
    n -= 8;
  }
  w = 0;
  memcpy(&w, k, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32));
}

int64_t dict_now(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t *u32at(const Dict *d, uint32_t off) {
  return (uint32_t *)(void *)(dict_base(d) + off);
}

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static int expired(const DictEntry *e, int64_t now) { /* e: a checked copy */
  int64_t x = e->expire;

  return x != 0 && x <= now;
}

/* The most entries a heap can hold: bounds every walk. */
static uint32_t max_entries(const Dict *d) {
  return (d->heap_end - d->heap_off) / 8u + 1u;
}

/* ---- geometry ------------------------------------------------------------ */

int dict_layout(Dict *d, size_t region) {
  uint32_t nb = 16, ns;

  if (region < DICT_MIN_REGION || region > UINT32_MAX - 8u)
    return -1;

  ns = (uint32_t)(region / 65536u);
  ns = ns < 1 ? 1 : ns > 16 ? 16 : ns;
  while (nb < (1u << 24) && (size_t)nb * 256u < region)
    nb *= 2;

  d->region = (uint32_t)region;
  d->nstripes = ns;
  d->stripes_off = DICT_HEADER;
  d->nbuckets = nb;
  d->buckets_off = DICT_HEADER + ns * DICT_STRIPE_BYTES;
  d->heap_off = (uint32_t)align8(d->buckets_off + (size_t)nb * 4u);
  d->heap_end = (uint32_t)(region & ~(size_t)7u);
  if (d->heap_off >= d->heap_end || d->heap_end - d->heap_off < 1024u)
    return -1;

  return 0;
}

void dict_format(Dict *d) {
  DictHeader *h = dict_header(d);
  DictState *st = dict_state(d);

  memset(dict_base(d), 0, d->heap_off);
  h->version = DICT_VERSION;
  h->region = d->region;
  h->nbuckets = d->nbuckets;
  h->buckets_off = d->buckets_off;
  h->heap_off = d->heap_off;
  h->heap_end = d->heap_end;
  h->nstripes = d->nstripes;
  h->stripes_off = d->stripes_off;
  st->top = d->heap_off;
  shm_lockinit(&h->lock);
  h->ready = 1;
  __atomic_store_n(&h->magic, DICT_MAGIC, __ATOMIC_SEQ_CST); /* last */
}

/* NULL when the header at hand describes the dictionary d would lay out in
 * a region of its size (which also fits in avail bytes), else why not. */
const char *dict_validate_header(Dict *d, const DictHeader *h, size_t avail) {
  Dict want;

  if (__atomic_load_n(&h->magic, __ATOMIC_SEQ_CST) != DICT_MAGIC)
    return "no dictionary here (bad magic)";

  if (h->version != DICT_VERSION)
    return "a dictionary of another layout version";

  if (h->region > avail || dict_layout(&want, (size_t)h->region) != 0 ||
      h->nbuckets != want.nbuckets || h->buckets_off != want.buckets_off ||
      h->heap_off != want.heap_off || h->heap_end != want.heap_end ||
      h->nstripes != want.nstripes || h->stripes_off != want.stripes_off)
    return "dict region is corrupt (header out of range)";

  d->region = want.region;
  d->nbuckets = want.nbuckets;
  d->buckets_off = want.buckets_off;
  d->heap_off = want.heap_off;
  d->heap_end = want.heap_end;
  d->nstripes = want.nstripes;
  d->stripes_off = want.stripes_off;
  return NULL;
}

/* ---- entries ------------------------------------------------------------- */

/* (dict_entry, the checked snapshot of an entry's header, is in dict.h) */

static const char *ekey(const DictEntry *e) { return (const char *)(e + 1); }

/* memcmp(a, b, n) == 0, inline for the usual key lengths (8 to 16 bytes:
 * two overlapping 8-byte words, never a byte outside either key) */
static int same_key(const char *a, const char *b, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a1, b1, a2, b2;

    memcpy(&a1, a, 8);
    memcpy(&b1, b, 8);
    memcpy(&a2, a + n - 8, 8);
    memcpy(&b2, b + n - 8, 8);
    return ((a1 ^ b1) | (a2 ^ b2)) == 0;
  }
  return memcmp(a, b, n) == 0;
}

/* The value of e, whose checked header is s. */
static const unsigned char *evalue(const DictEntry *e, const DictEntry *s) {
  return (const unsigned char *)(e + 1) + s->klen;
}

uint32_t dict_find(Dict *d, const char *k, size_t klen, uint32_t h,
                   uint32_t *link, int *corrupt, DictEntry *snap) {
  uint32_t l = d->buckets_off + 4u * (h & (d->nbuckets - 1u));
  uint32_t off = *u32at(d, l), n;

  for (n = max_entries(d); off != 0 && n > 0; n--) {
    DictEntry s, *e = dict_entry(d, off, &s);

    if (e == NULL) {
      *corrupt = 1;
      return 0;
    }

    if (s.hash == h && s.klen == klen && same_key(ekey(e), k, klen)) {
      *link = l;
      if (snap != NULL)
        *snap = s;
      return off;
    }

    l = off + (uint32_t)offsetof(DictEntry, next);
    off = s.next;
  }

  if (off != 0)
    *corrupt = 1; /* a cycle */

  *link = l;
  return 0;
}

/* The entry header at off, lightly checked, or NULL: the offset must leave
 * a whole header inside the heap, aligned, and what is there must carry
 * the entry tag.  For the link fields only (the LRU links written, a chain
 * link read and checked in turn), never for a length: lighter than
 * dict_entry. */
static DictEntry *lru_node(const Dict *d, uint32_t off) {
  DictEntry *e;

  if (off % 8u != 0 || off < d->heap_off || off > d->heap_end - ENTRY_HEAD)
    return NULL;

  e = (DictEntry *)(void *)(dict_base(d) + off);
  return e->tag == ENTRY_TAG ? e : NULL;
}

/* The link (bucket slot or next field) that holds off, found by walking
 * the chain of its hash without reading off itself; 0 if none. */
static uint32_t find_link(Dict *d, uint32_t off, uint32_t h) {
  uint32_t l = d->buckets_off + 4u * (h & (d->nbuckets - 1u)), n;

  for (n = max_entries(d); n > 0; n--) {
    uint32_t cur = *u32at(d, l);

    if (cur == off)
      return l;

    /* only the next link is read from what is passed over: the light
     * check (aligned, a whole header inside the heap, the tag) suffices */
    if (cur == 0 || lru_node(d, cur) == NULL)
      return 0;

    l = cur + (uint32_t)offsetof(DictEntry, next);
  }

  return 0;
}

/* ---- the seqlock --------------------------------------------------------- */

/* Only the lock holder writes seq, so begin is a plain increment (a load
 * and a store) followed by a release fence: the odd value is ordered before
 * every store of the section (a reader whose copy saw one of them then
 * sees seq changed, through its acquire fence).  End is one seq_cst
 * read-modify-write: it releases the section's stores to the readers and,
 * being a full barrier, orders them before the loads of the waiter counts
 * that follow (the writer's half of the Dekker handshake with d:wait, which
 * increments its count, then reads seq). */
void dict_write_begin(Dict *d) {
  uint64_t *seq = &dict_header(d)->seq;

  __atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) + 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void wake_pending(Dict *d);

void dict_write_end(Dict *d) {
  __atomic_fetch_add(&dict_header(d)->seq, 1, __ATOMIC_SEQ_CST);
  if (d->wake != 0)
    wake_pending(d);
}

/* ---- LRU ----------------------------------------------------------------- */

/* Unlink off from the LRU list; neighbours that are not entries are left
 * alone (the check reports the list, recovery rebuilds it). */
static void lru_unlink(Dict *d, DictEntry *e) {
  DictState *st = dict_state(d);
  uint32_t prev = e->lru_prev, next = e->lru_next;
  DictEntry *p = prev ? lru_node(d, prev) : NULL;
  DictEntry *n = next ? lru_node(d, next) : NULL;

  if (p != NULL)
    p->lru_next = next;
  else
    st->lru_head = next;

  if (n != NULL)
    n->lru_prev = prev;
  else
    st->lru_tail = prev;

  e->lru_prev = e->lru_next = 0;
}

static void lru_push(Dict *d, uint32_t off, DictEntry *e) {
  DictState *st = dict_state(d);
  uint32_t head = st->lru_head;
  DictEntry *h = head ? lru_node(d, head) : NULL;

  e->lru_prev = 0;
  e->lru_next = h != NULL ? head : 0;
  if (h != NULL)
    h->lru_prev = off;
  else
    st->lru_tail = off;
  st->lru_head = off;
}

void dict_touch(Dict *d, uint32_t off) {
  DictEntry s, *e = dict_entry(d, off, &s);

  if (e != NULL)
    dict_touch_entry(d, off, e);
}

/* A get notes the entry it read in its process's stripe; the next lock
 * holder moves those entries to the LRU head, after checking each is still
 * indexed.  Lossy by design, and so without a read-modify-write: a full
 * stripe drops the read, and two processes sharing a stripe (pid modulo
 * the stripes), or a reader racing the lock holder's reset, may overwrite
 * each other's slot or bring back a slot already replayed (an LRU order
 * approximate under concurrent reads, as documented; every slot replayed
 * is checked).  A process alone in its stripe with no lock holder
 * meanwhile, a quiet dictionary, records every read in order, up to
 * DICT_STRIPE_SLOTS between two writes. */
void dict_record_read(Dict *d, uint32_t off) {
  uint32_t *s = u32at(d, d->stripes_off + d->stripe * DICT_STRIPE_BYTES);
  uint32_t i = __atomic_load_n(&s[0], __ATOMIC_RELAXED), bit = 1u << d->stripe;
  uint32_t *reads = &dict_state(d)->reads;

  if (i < DICT_STRIPE_SLOTS) {
    __atomic_store_n(&s[1 + i], off, __ATOMIC_RELAXED);
    __atomic_store_n(&s[0], i + 1u, __ATOMIC_RELEASE);
  }
  /* flag the stripe for the lock holder (who takes the flags, then the
   * counts): set on every read that finds it clear, so that a count left
   * behind by a race with the holder waits at most for this process's
   * next read */
  if ((__atomic_load_n(reads, __ATOMIC_RELAXED) & bit) == 0)
    __atomic_fetch_or(reads, bit, __ATOMIC_RELEASE);
}

/* Move e (at off, indexed: checked by the caller) to the LRU head. */
void dict_touch_entry(Dict *d, uint32_t off, DictEntry *e) {
  if (dict_state(d)->lru_head == off)
    return;

  lru_unlink(d, e);
  lru_push(d, off, e);
}

static void replay_reads(Dict *d) {
  uint32_t *s0 = u32at(d, d->stripes_off), *reads = &dict_state(d)->reads, m, j;

  if (__atomic_load_n(reads, __ATOMIC_RELAXED) == 0)
    return; /* the usual case for a writer: look before writing the line */
  m = __atomic_exchange_n(reads, 0, __ATOMIC_ACQ_REL);
  m &= d->nstripes >= 32 ? ~0u : (1u << d->nstripes) - 1u;
  while (m != 0) {
    uint32_t i = (uint32_t)__builtin_ctz(m), *s = s0 + i * (DICT_STRIPE_BYTES / 4u), n;

    m &= m - 1u;
    if (__atomic_load_n(&s[0], __ATOMIC_RELAXED) == 0)
      continue;
    n = __atomic_exchange_n(&s[0], 0, __ATOMIC_ACQ_REL);
    if (n > DICT_STRIPE_SLOTS)
      n = DICT_STRIPE_SLOTS;
    for (j = 0; j < n; j++) {
      uint32_t off = __atomic_load_n(&s[1 + j], __ATOMIC_RELAXED);
      DictEntry *e = lru_node(d, off); /* only its LRU links are written */

      /* indexed: found by walking its chain (the hash only picks the
       * chain: a wrong one finds nothing) */
      if (e != NULL && find_link(d, off, e->hash) != 0)
        dict_touch_entry(d, off, e);
    }
  }
}

/* ---- waiting on a key ---------------------------------------------------- */

int dict_wslot(uint32_t hash) { return (int)(hash % DICT_WAIT_SLOTS); }

/* A change to a key of this hash: its wait slot is woken after the write
 * section (dict_write_end), so that a write costs one load per slot when
 * nobody waits.  The handshake with d:wait (dict.c): the waiter increments
 * the slot's waiter count (seq_cst), then reads seq and the key; the
 * writer commits, increments seq (seq_cst RMW), then loads the count.
 * Either the writer sees the waiter and bumps the slot word the waiter
 * sleeps on (its futex wait then returns at once), or the waiter's reads
 * come after the writer's seq increment in the single total order and see
 * the change. */
static void wake_slot(Dict *d, uint32_t hash) {
  d->wake |= 1u << dict_wslot(hash);
}

static void wake_pending(Dict *d) {
  uint32_t m = d->wake & ((1u << DICT_WAIT_SLOTS) - 1u);

  d->wake = 0;
  while (m != 0) {
    uint32_t i = (uint32_t)__builtin_ctz(m), *w = u32at(d, DICT_WAIT_OFF + 8u * i);

    m &= m - 1u;
    if (__atomic_load_n(&w[1], __ATOMIC_SEQ_CST) != 0) {
      __atomic_fetch_add(&w[0], 1, __ATOMIC_SEQ_CST);
      syscall(SYS_futex, &w[0], FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
  }
}

void dict_bump(Dict *d, uint32_t off) {
  DictEntry s, *e = dict_entry(d, off, &s);

  if (e != NULL)
    dict_bump_entry(d, e, &s);
}

void dict_bump_entry(Dict *d, DictEntry *e, const DictEntry *s) {
  e->version = ++dict_state(d)->clock;
  wake_slot(d, s->hash);
}

/* ---- recovery ------------------------------------------------------------ */

/* Finish a journaled move: the rest of the copy, then the chain link. */
static void finish_move(Dict *d) {
  DictState *st = dict_state(d);
  uint32_t from = st->j_from, to = st->j_to, len = st->j_len, done = st->j_done;
  unsigned char *b = dict_base(d);

  st->j_op = 0;
  if (to >= from || from % 8u || to % 8u || to < d->heap_off ||
      from > d->heap_end || len % 8u || len < ENTRY_HEAD ||
      len > d->heap_end - from || done > len)
    return; /* not a journal this module wrote: rebuild goes without it */

  while (done < len) {
    uint32_t step = len - done < from - to ? len - done : from - to;

    memmove(b + to + done, b + from + done, step);
    done += step;
  }

  {
    DictEntry s;
    uint32_t l = dict_entry(d, to, &s) != NULL ? find_link(d, from, s.hash) : 0;

    if (l != 0)
      *u32at(d, l) = to;
  }
}

typedef struct Live {
  uint32_t off, size;
  uint64_t version;
} Live;

static int by_off(const void *a, const void *b) {
  uint32_t x = ((const Live *)a)->off, y = ((const Live *)b)->off;

  return (x > y) - (x < y);
}

static int by_version(const void *a, const void *b) {
  uint64_t x = ((const Live *)a)->version, y = ((const Live *)b)->version;

  return (x > y) - (x < y);
}

/* Rebuild everything from the hash chains: cut each chain at the first
 * thing that is not a sound entry of that bucket (or one seen before, or
 * overlapping another), then lay dead blocks over the gaps, set top, the
 * counters and the LRU list (by version: the most recently written first).
 * Returns the entries dropped, or -1 when memory for the rebuild was
 * missing (then the dictionary is emptied: sound, if empty). */
static long dict_rebuild(Dict *d) {
  DictState *st = dict_state(d);
  uint32_t cap = max_entries(d), n = 0, b, i;
  long dropped = 0;
  Live *live;

  if (st->j_op != 0)
    finish_move(d);

  live = (Live *)malloc((size_t)cap * sizeof *live);
  if (live == NULL) {
    dict_format(d);
    return -1;
  }

  for (b = 0; b < d->nbuckets; b++) {
    uint32_t l = d->buckets_off + 4u * b;

    for (;;) {
      uint32_t off = *u32at(d, l);
      DictEntry s;

      if (off == 0)
        break;

      if (dict_entry(d, off, &s) == NULL || (s.hash & (d->nbuckets - 1u)) != b ||
          dict_hash(ekey((const DictEntry *)(const void *)(dict_base(d) + off)),
                    s.klen) != s.hash ||
          n >= cap) {
        *u32at(d, l) = 0;
        dropped++;
        break;
      }

      live[n].off = off;
      live[n].size = s.size;
      live[n].version = s.version;
      n++;
      l = off + (uint32_t)offsetof(DictEntry, next);
    }
  }

  /* Overlaps (an entry seen twice, chains sharing a tail, garbage):
   * start again without the later one, cutting its chain before it. */
  qsort(live, n, sizeof *live, by_off);
  for (i = 1; i < n; i++) {
    if (live[i].off < live[i - 1].off + live[i - 1].size) {
      DictEntry s;
      uint32_t l = dict_entry(d, live[i].off, &s) != NULL
                       ? find_link(d, live[i].off, s.hash) : 0;

      free(live);
      if (l == 0) {
        dict_format(d);
        return -1;
      }
      *u32at(d, l) = 0;
      return dropped + 1 + dict_rebuild(d);
    }
  }

  {
    uint32_t pos = d->heap_off;
    uint64_t used = 0, dead = 0;

    for (i = 0; i < n; i++) {
      if (live[i].off > pos) { /* a gap: one dead block */
        DictEntry *g = (DictEntry *)(void *)(dict_base(d) + pos);

        g->size = live[i].off - pos;
        g->tag = DEAD_TAG;
        dead += g->size;
      }
      used += live[i].size;
      pos = live[i].off + live[i].size;
    }
    st->top = pos;
    st->live = used;
    st->dead = dead;
    st->entries = n;
  }

  qsort(live, n, sizeof *live, by_version);
  st->lru_head = st->lru_tail = 0;
  for (i = 0; i < n; i++) {
    DictEntry s, *e = dict_entry(d, live[i].off, &s);

    if (e == NULL) /* overwritten meanwhile: the next check or lock sees it */
      continue;
    e->lru_prev = e->lru_next = 0;
    lru_push(d, live[i].off, e);
    if (s.version > st->clock)
      st->clock = s.version;
  }
  free(live);

  for (i = 0; i < d->nstripes; i++)
    *u32at(d, d->stripes_off + i * DICT_STRIPE_BYTES) = 0;

  st->j_op = 0;
  st->repairs++;
  return dropped;
}

/* The state a lock holder relies on, at a glance. */
static int state_sound(Dict *d) {
  DictState *st = dict_state(d);
  uint64_t seq = __atomic_load_n(&dict_header(d)->seq, __ATOMIC_RELAXED);
  uint32_t top = st->top, head = st->lru_head, tail = st->lru_tail;

  return (seq & 1u) == 0 && st->j_op == 0 && top % 8u == 0 &&
         top >= d->heap_off && top <= d->heap_end &&
         (head == 0 || lru_node(d, head) != NULL) &&
         (tail == 0 || lru_node(d, tail) != NULL) &&
         st->dead <= (uint64_t)(top - d->heap_off) &&
         st->live <= (uint64_t)(top - d->heap_off);
}

void dict_repair(Dict *d) {
  DictHeader *h = dict_header(d);
  uint64_t seq = __atomic_load_n(&h->seq, __ATOMIC_SEQ_CST);

  if (seq & 1u) /* a writer died inside its change: readers retry meanwhile */
    __atomic_store_n(&h->seq, seq + 1, __ATOMIC_SEQ_CST);

  dict_write_begin(d);
  (void)dict_rebuild(d);
  dict_write_end(d);
}

/* ---- the lock ------------------------------------------------------------ */

int dict_lock(lua_State *L, Dict *d, double seconds) {
  DictHeader *h = dict_header(d);
  ShmWaiter wt;
  int r = shm_lockfast(&h->lock);

  if (r != SHM_LOCK_OK) {
    struct timespec deadline;

    if (seconds >= 0) /* the deadline only now: no clock read when free */
      sync_deadline(&deadline, seconds);
    sync_waitstart(L, &wt);
    r = shm_lock(&wt, &h->lock, seconds >= 0 ? &deadline : NULL);
    if (r == SHM_LOCK_TIMEOUT)
      return DR_TIMEOUT;
    if (r == SHM_LOCK_INTERRUPTED)
      return DR_INTERRUPTED;
    if (r != SHM_LOCK_OK && r != SHM_LOCK_OWNERDIED)
      return DR_CORRUPT; /* the word names this thread: overwritten */
    dict_state(d)->contention++;
  }

  /* Never carry on over a structure that was not verified: after a dead
   * holder, or when the state looks wrong, rebuild from the chains. */
  if (r == SHM_LOCK_OWNERDIED || !state_sound(d))
    dict_repair(d);

  replay_reads(d);
  return DR_OK;
}

void dict_unlock(Dict *d) { (void)shm_unlock(&dict_header(d)->lock); }

/* ---- allocation ---------------------------------------------------------- */

size_t dict_free_bytes(Dict *d) {
  DictState *st = dict_state(d);

  return (size_t)(d->heap_end - st->top) + (size_t)st->dead;
}

size_t dict_largest(Dict *d) {
  size_t f = dict_free_bytes(d) & ~(size_t)7u;

  return f > ENTRY_HEAD ? f - ENTRY_HEAD : 0;
}

/* Move the live entry at src (size len) down to dst, journaled. */
static void move_entry(Dict *d, uint32_t src, uint32_t dst, uint32_t len,
                       uint32_t link) {
  DictState *st = dict_state(d);
  unsigned char *b = dict_base(d);
  uint32_t done = 0;

  st->j_from = src;
  st->j_to = dst;
  st->j_len = len;
  st->j_done = 0;
  __atomic_store_n(&st->j_op, 1u, __ATOMIC_SEQ_CST);
  while (done < len) {
    uint32_t step = len - done < src - dst ? len - done : src - dst;

    memmove(b + dst + done, b + src + done, step);
    done += step;
    __atomic_store_n(&st->j_done, done, __ATOMIC_SEQ_CST);
  }

  *u32at(d, link) = dst; /* commit: the chain points at the copy */
  {
    DictEntry *e = (DictEntry *)(void *)(b + dst);
    uint32_t prev = e->lru_prev, next = e->lru_next;
    DictEntry *p = prev ? lru_node(d, prev) : NULL;
    DictEntry *n = next ? lru_node(d, next) : NULL;

    if (p != NULL)
      p->lru_next = dst;
    if (st->lru_head == src)
      st->lru_head = dst;
    if (n != NULL)
      n->lru_prev = dst;
    if (st->lru_tail == src)
      st->lru_tail = dst;
  }
  __atomic_store_n(&st->j_op, 0u, __ATOMIC_SEQ_CST);
}

/* Slide the live entries down over the dead blocks.  0, or -1 when the
 * heap does not tile into blocks (then the caller repairs). */
static int compact(Dict *d) {
  DictState *st = dict_state(d);
  uint32_t src = d->heap_off, dst = d->heap_off, top = st->top;
  uint64_t live = 0;

  if (top % 8u != 0 || top < d->heap_off || top > d->heap_end)
    return -1;

  while (src < top) {
    DictEntry *e = (DictEntry *)(void *)(dict_base(d) + src);
    uint32_t size;

    if (top - src < 8u)
      return -1;

    size = e->size;
    if (size < 8u || size % 8u != 0 || size > top - src)
      return -1;

    if (e->tag == ENTRY_TAG) {
      DictEntry s;
      uint32_t link = dict_entry(d, src, &s) != NULL && s.size == size
                          ? find_link(d, src, s.hash) : 0;

      if (link != 0) { /* indexed: keep it */
        if (dst != src)
          move_entry(d, src, dst, size, link);
        dst += size;
        live += size;
      }
    } else if (e->tag != DEAD_TAG) {
      return -1;
    }
    src += size;
  }

  st->top = dst;
  st->dead = 0;
  st->live = live;
  return 0;
}

/* Evict the least recently used entry: 1, or 0 when there is none.
 * *valid: it had not expired. */
static int evict_one(Dict *d, int64_t *now, int *valid) {
  DictState *st = dict_state(d);
  uint32_t off = st->lru_tail, link;
  DictEntry s, *e = off ? dict_entry(d, off, &s) : NULL;

  if (e == NULL)
    return 0;

  link = find_link(d, off, s.hash);
  if (link == 0)
    return 0;

  if (*now == 0 && s.expire != 0)
    *now = dict_now();
  *valid = !expired(&s, *now);
  if (*valid)
    st->evictions++;
  else
    st->expirations++;
  dict_remove(d, link, off);
  return 1;
}

/* Room for need bytes at top: DR_OK, DR_NOMEM, or DR_CORRUPT; *moved set
 * when entries were evicted or moved (offsets found before are stale). */
static int make_room(Dict *d, size_t need, int evict, int *forcible,
                     int *moved) {
  DictState *st = dict_state(d);
  int64_t now = 0; /* read when an eviction needs it */
  uint32_t n;

  if (need > (size_t)(d->heap_end - d->heap_off))
    return DR_NOMEM;

  for (n = max_entries(d); n > 0; n--) {
    uint32_t top = st->top;
    int valid;

    if (top % 8u != 0 || top < d->heap_off || top > d->heap_end)
      return DR_CORRUPT;

    if ((size_t)(d->heap_end - top) >= need)
      return DR_OK;

    if (dict_free_bytes(d) >= need) {
      *moved = 1;
      return compact(d) == 0 ? DR_OK : DR_CORRUPT;
    }

    if (!evict || !evict_one(d, &now, &valid))
      return DR_NOMEM;

    *moved = 1;
    if (valid)
      *forcible = 1;
  }

  return DR_NOMEM;
}

void dict_remove(Dict *d, uint32_t link, uint32_t off) {
  DictState *st = dict_state(d);
  DictEntry s, *e = dict_entry(d, off, &s);

  if (e == NULL)
    return;

  *u32at(d, link) = s.next; /* commit */
  lru_unlink(d, e);
  wake_slot(d, s.hash);
  e->tag = DEAD_TAG;
  st->entries--;
  st->live -= s.size;
  if (off + s.size == st->top)
    st->top = off; /* the last block: back to the tail at once */
  else
    st->dead += s.size;
}

/* The value's bytes at p: the prefix, then v. */
static void write_value(unsigned char *p, const DictValue *v,
                        const void *prefix, size_t plen) {
  if (plen > 0)
    memcpy(p, prefix, plen);
  p += plen;
  switch (v->type) {
  case DV_BOOL: *p = (unsigned char)v->i; break;
  case DV_INT: memcpy(p, &v->i, 8); break;
  case DV_FLOAT: memcpy(p, &v->n, 8); break;
  default:
    if (v->len > 0)
      memcpy(p, v->s, v->len);
  }
}

/* Replace the value of the entry o at off (checked header os: a block of
 * the size the new value needs) where it is.  Crash consistency without the
 * one-store commit: the whole block is first copied to scratch, in the
 * free tail, and journaled as a move from there back over the entry, so
 * that a process killed while overwriting leaves recovery (finish_move) a
 * journal that puts the old entry back.  Readers retry meanwhile (the
 * write section is open). */
static void put_in_place(Dict *d, DictEntry *o, uint32_t off, const DictEntry *os,
                         const DictValue *v, size_t vlen, uint32_t flags,
                         int64_t expire, const void *prefix, size_t plen,
                         uint32_t scratch) {
  DictState *st = dict_state(d);
  unsigned char *b = dict_base(d);

  memcpy(b + scratch, b + off, os->size);
  st->j_from = scratch;
  st->j_to = off;
  st->j_len = os->size;
  st->j_done = 0;
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&st->j_op, 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE); /* the journal before the overwrite */
  o->vlen = (uint32_t)vlen;
  o->vtype = (uint8_t)v->type;
  o->flags = flags;
  o->expire = expire;
  o->version = ++st->clock;
  write_value((unsigned char *)(o + 1) + os->klen, v, prefix, plen);
  __atomic_thread_fence(__ATOMIC_RELEASE); /* the overwrite before the end */
  __atomic_store_n(&st->j_op, 0u, __ATOMIC_RELAXED);
  dict_touch_entry(d, off, o);
  wake_slot(d, os->hash);
}

int dict_put(Dict *d, const char *k, size_t klen, uint32_t h,
             const DictValue *v, uint32_t flags, int64_t expire, int evict,
             int *forcible, const void *prefix, size_t plen, uint32_t link,
             uint32_t old, const DictEntry *given) {
  DictState *st = dict_state(d);
  size_t vlen = v->len + plen;
  size_t need = align8((size_t)ENTRY_HEAD + klen + vlen);
  uint32_t off;
  unsigned char *p;
  DictEntry *e;
  int r, corrupt = 0, moved = 0;

  if (vlen > (size_t)d->region)
    return DR_NOMEM;

  if (link != 0 && old != 0) { /* a value of the same block size: in place */
    DictEntry os, *o;
    uint32_t top = st->top, tries;

    if (given != NULL) { /* checked by dict_find in this lock hold */
      os = *given;
      o = (DictEntry *)(void *)(dict_base(d) + old);
    } else {
      o = dict_entry(d, old, &os);
    }

    /* the undo copy needs the free tail: when dead blocks make the room,
     * compact first (as make_room would), then find the entry again */
    for (tries = 0; o != NULL && os.size == need && os.hash == h &&
                    os.klen == klen && tries < 2; tries++) {
      if (top % 8u != 0 || top < d->heap_off || top > d->heap_end || old >= top ||
          top - old < need)
        break;
      if (need <= (size_t)(d->heap_end - top)) {
        put_in_place(d, o, old, &os, v, vlen, flags, expire, prefix, plen, top);
        return DR_OK;
      }
      if (tries > 0 || dict_free_bytes(d) < need)
        break;
      if (compact(d) != 0)
        return DR_CORRUPT;
      old = dict_find(d, k, klen, h, &link, &corrupt, &os);
      if (corrupt)
        return DR_CORRUPT;
      o = old != 0 ? (DictEntry *)(void *)(dict_base(d) + old) : NULL;
      top = st->top;
      moved = 1;
    }
  }

  r = make_room(d, need, evict, forcible, &moved);
  if (r != DR_OK)
    return r;

  off = st->top; /* checked again: another process may write anywhere */
  if (off % 8u != 0 || off < d->heap_off || off > d->heap_end ||
      need > (size_t)(d->heap_end - off))
    return DR_CORRUPT;

  e = (DictEntry *)(void *)(dict_base(d) + off);
  e->size = (uint32_t)need;
  e->tag = ENTRY_TAG;
  e->hash = h;
  e->lru_prev = e->lru_next = 0;
  e->klen = (uint32_t)klen;
  e->vlen = (uint32_t)vlen;
  e->vtype = (uint8_t)v->type;
  e->pad[0] = e->pad[1] = e->pad[2] = 0;
  e->flags = flags;
  e->expire = expire;
  e->version = ++st->clock;
  p = (unsigned char *)(e + 1);
  memcpy(p, k, klen);
  write_value(p + klen, v, prefix, plen);
  st->top = off + (uint32_t)need;

  if (link == 0 || moved) { /* not found by the caller, or stale since */
    old = dict_find(d, k, klen, h, &link, &corrupt, NULL);
    if (corrupt)
      return DR_CORRUPT;
  }

  {
    DictEntry os, *o = old != 0 ? dict_entry(d, old, &os) : NULL;

    if (old != 0 && o == NULL)
      return DR_CORRUPT;

    e->next = o != NULL ? os.next : *u32at(d, link);
    __atomic_store_n(u32at(d, link), off, __ATOMIC_RELEASE); /* commit */
    st->entries++;
    st->live += need;
    if (o != NULL) {
      lru_unlink(d, o);
      o->tag = DEAD_TAG;
      st->entries--;
      st->live -= os.size;
      st->dead += os.size;
    }
  }
  lru_push(d, off, e);
  wake_slot(d, h);
  return DR_OK;
}

/* e's value into o (strings and lists into d->buf); s: e's checked header.
 * 0, or -2 when memory for the buffer is missing. */
static int copyout(Dict *d, const DictEntry *e, const DictEntry *s, DictOut *o) {
  const unsigned char *v = evalue(e, s);
  size_t n = s->vlen;

  o->type = s->vtype;
  o->flags = s->flags;
  o->expire = s->expire;
  o->version = s->version;
  o->len = 0;
  switch (s->vtype) {
  case DV_BOOL:
    o->i = n >= 1 ? v[0] != 0 : 0;
    break;
  case DV_INT:
    o->i = 0;
    if (n >= 8)
      memcpy(&o->i, v, 8);
    break;
  case DV_FLOAT:
    o->n = 0;
    if (n >= 8)
      memcpy(&o->n, v, 8);
    break;
  default:
    if (n > d->bufsize) {
      char *nb = (char *)realloc(d->buf, n);

      if (nb == NULL)
        return -2;
      d->buf = nb;
      d->bufsize = n;
    }
    if (n > 0)
      memcpy(d->buf, v, n);
    o->len = n;
  }
  return 0;
}

int dict_copyout(Dict *d, uint32_t off, DictOut *o) {
  DictEntry s, *e = dict_entry(d, off, &s);

  if (e == NULL)
    return -1;

  return copyout(d, e, &s, o);
}

/* ---- lock-free reads ----------------------------------------------------- */

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

int dict_peek(Dict *d, const char *k, size_t klen, uint32_t h, DictOut *o,
              uint32_t *where) {
  DictHeader *hd = dict_header(d);
  int attempt;

  for (attempt = 0; attempt < 64; attempt++) {
    uint64_t s1 = __atomic_load_n(&hd->seq, __ATOMIC_ACQUIRE), s2;
    uint32_t off, n;
    int found = 0, bad = 0;

    if (s1 & 1u) {
      relax();
      continue;
    }

    off = __atomic_load_n(u32at(d, d->buckets_off + 4u * (h & (d->nbuckets - 1u))),
                          __ATOMIC_ACQUIRE);
    for (n = max_entries(d); off != 0 && n > 0; n--) {
      DictEntry s, *e = dict_entry(d, off, &s);

      if (e == NULL) {
        bad = 1;
        break;
      }

      if (s.hash == h && s.klen == klen && same_key(ekey(e), k, klen)) {
        if (copyout(d, e, &s, o) != 0)
          bad = 1;
        found = 1;
        break;
      }
      off = s.next;
    }
    if (n == 0)
      bad = 1;

    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    s2 = __atomic_load_n(&hd->seq, __ATOMIC_RELAXED);
    if (s1 != s2 || bad)
      continue; /* a writer changed things meanwhile (or garbage): again */

    *where = found ? off : 0;
    return found ? DR_OK : DR_NOTFOUND;
  }

  return -1;
}

/* ---- expiry, check ------------------------------------------------------- */

uint64_t dict_flush_expired(Dict *d, uint64_t max, int all) {
  int64_t now = dict_now();
  uint64_t n = 0;
  uint32_t b;

  for (b = 0; b < d->nbuckets && (max == 0 || n < max); b++) {
    uint32_t l = d->buckets_off + 4u * b, steps;

    for (steps = max_entries(d); steps > 0 && (max == 0 || n < max); steps--) {
      uint32_t off = *u32at(d, l);
      DictEntry s, *e = off ? dict_entry(d, off, &s) : NULL;

      if (e == NULL)
        break;

      if (all) {
        e->expire = 1; /* flush_all: expired from now on */
        wake_slot(d, s.hash);
        l = off + (uint32_t)offsetof(DictEntry, next);
      } else if (expired(&s, now)) {
        dict_state(d)->expirations++;
        dict_remove(d, l, off);
        n++;
      } else {
        l = off + (uint32_t)offsetof(DictEntry, next);
      }
    }
  }
  return n;
}

#define FAIL(...)                                   \
  do {                                              \
    snprintf(msg, msgsize, __VA_ARGS__);            \
    return 1;                                       \
  } while (0)

int dict_check(Dict *d, char *msg, size_t msgsize) {
  DictState *st = dict_state(d);
  uint32_t b, pos, top, n = 0, blocks = 0, steps, lruc = 0, prev = 0, cur;
  uint64_t live = 0, dead = 0;

  if (st->j_op != 0)
    FAIL("a compaction was left half done (move of %u bytes)", st->j_len);

  top = st->top;
  if (top % 8u || top < d->heap_off || top > d->heap_end)
    FAIL("top %u out of the heap [%u, %u]", top, d->heap_off, d->heap_end);

  for (b = 0; b < d->nbuckets; b++) {
    uint32_t off = *u32at(d, d->buckets_off + 4u * b);

    for (steps = max_entries(d); off != 0; steps--) {
      DictEntry s, *e = dict_entry(d, off, &s);

      if (steps == 0)
        FAIL("bucket %u: the chain does not end", b);
      if (e == NULL || off >= top)
        FAIL("bucket %u: no entry at %u", b, off);
      if ((s.hash & (d->nbuckets - 1u)) != b || dict_hash(ekey(e), s.klen) != s.hash)
        FAIL("entry at %u: hash does not match its key or bucket", off);
      n++;
      off = s.next;
    }
  }

  for (pos = d->heap_off; pos < top; blocks++) {
    uint32_t hd[2];
    DictEntry s;

    if (top - pos < 8u)
      FAIL("block at %u: bad size", pos);
    memcpy(hd, dict_base(d) + pos, 8); /* size, tag: read once */
    if (hd[0] < 8u || hd[0] % 8u || hd[0] > top - pos)
      FAIL("block at %u: bad size", pos);
    if (hd[1] == ENTRY_TAG) {
      if (dict_entry(d, pos, &s) == NULL || s.size != hd[0] ||
          find_link(d, pos, s.hash) == 0)
        FAIL("entry at %u: not indexed", pos);
      live += hd[0];
    } else if (hd[1] == DEAD_TAG) {
      dead += hd[0];
    } else {
      FAIL("block at %u: unknown tag", pos);
    }
    pos += hd[0];
  }
  (void)blocks;

  if (live != st->live || dead != st->dead)
    FAIL("byte counts %llu/%llu, the heap holds %llu/%llu",
         (unsigned long long)st->live, (unsigned long long)st->dead,
         (unsigned long long)live, (unsigned long long)dead);

  for (cur = st->lru_head, steps = max_entries(d); cur != 0; steps--) {
    DictEntry s;

    if (steps == 0 || dict_entry(d, cur, &s) == NULL)
      FAIL("LRU list broken at %u", cur);
    if (s.lru_prev != prev)
      FAIL("LRU list: entry at %u points back to %u, not %u", cur, s.lru_prev, prev);
    lruc++;
    prev = cur;
    cur = s.lru_next;
  }
  if (prev != st->lru_tail)
    FAIL("LRU tail %u, the list ends at %u", st->lru_tail, prev);

  if (n != st->entries || lruc != n)
    FAIL("%u entries indexed, %u in the LRU list, %llu counted", n, lruc,
         (unsigned long long)st->entries);

  return 0;
}
