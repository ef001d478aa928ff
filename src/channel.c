/*
 * A bounded queue of variable-length string messages in a segment region,
 * for several senders and receivers in several processes.
 *
 * Region layout (offsets from the region start; native byte order):
 *     0  u32 magic "SVCH", u32 version (3)
 *     8  u64 capacity (bytes of the ring), u64 region size
 *    24  u32 closed
 *    64  u64 tail (bytes ever sent, plus 1 once closed), u32 data_seq,
 *        u32 recv_waiters
 *   128  u64 head (bytes ever received), u32 space_seq, u32 send_waiters
 *   192  u64 lock word serialising senders (lock.c)
 *   256  u64 lock word serialising receivers
 *   320  the ring: records of an 8-byte length and the message padded to 8
 *        bytes, wrapping around the end of the ring.
 *
 * Senders own tail, receivers own head; a message is published by the
 * compare-and-swap of tail after its bytes are written, and consumed by the
 * store of head after they are copied out, so a process that dies mid-call
 * leaves the queue consistent (its lock passes to the next caller, lock.c).
 * Lengths and positions read from shared memory are validated before use,
 * so a corrupt region raises an error and never reads or writes outside the
 * segment.
 *
 * Closing sets bit 0 of tail (positions are multiples of 8) as well as the
 * closed word.  A sender publishes with a compare-and-swap from the tail it
 * read, which fails once the bit is set: so a send either lands before the
 * close, and receivers see it, or returns "closed".  A receiver that reads
 * a tail with the bit set and nothing between head and it knows nothing
 * more will come.
 *
 * Each side writes one header line per message: senders the tail line,
 * receivers the head line.  Each line also holds what the *other* side
 * writes only when it goes to sleep (recv_waiters beside tail, send_waiters
 * beside head), so that the publisher's look at the waiter count after
 * each store reads a line it has just written.  A handle remembers the
 * opposite index it saw last (head_seen, tail_seen) and reads the other
 * side's line again only when that value says full (or empty).
 *
 * Blocking is an eventcount (see ch_wait): a side that finds no room (no
 * message) spins on the opposite index, then counts itself in the waiters
 * word, loads the sequence word, looks at the index once more and sleeps
 * on the sequence word with a futex.  A publisher stores its index, then
 * loads the waiters word, and only when it is not zero bumps the sequence
 * word and makes the wake system call.  close() always bumps and wakes.
 *
 * Version 1 bumped the sequence word for every message and kept the
 * waiter counts on the other side's line; version 2 used glibc robust
 * mutexes (which trust pointers in the region) and a closed word alone;
 * open() refuses a region of another version.
 */

/***
 * @module sysvshm.channel
 */

/***
 * Channel methods.
 * Methods of the channel that `new` and `open` return.
 * @section methods
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pack.h"
#include "sysvshm.h"

#define CHANNEL_TNAME "sysvshm.channel"
#define CH_MAGIC 0x48435653u /* "SVCH" */
#define CH_VERSION 3u
#define CH_HEADER 320u
#define CH_MIN_REGION 1024u
#define CH_ALIGN 64u

typedef struct ChHeader {
  uint32_t magic, version;
  uint64_t capacity, region;
  uint32_t closed;
  unsigned char pad0[64 - 28];
  uint64_t tail;                   /* written by senders, each message */
  uint32_t data_seq, recv_waiters; /* written by sleeping receivers */
  unsigned char pad1[64 - 16];
  uint64_t head;                   /* written by receivers, each message */
  uint32_t space_seq, send_waiters; /* written by sleeping senders */
  unsigned char pad2[64 - 16];
  uint64_t send_lock;
  unsigned char pad3[64 - 8];
  uint64_t recv_lock;
  unsigned char pad4[64 - 8];
} ChHeader;

typedef char ch_header_size_check[sizeof(ChHeader) == CH_HEADER ? 1 : -1];

/* The Lua handle.  The segment is kept alive in the user value. */
typedef struct Channel {
  const void *tag; /* &ch_tag: marks a real channel handle */
  Segment *seg;
  lua_State *main; /* the main thread, for sync_waitinit */
  size_t off;      /* region start in the segment */
  size_t region;   /* region size, header included */
  size_t maxmsg;   /* largest message accepted */
  uint64_t cap;    /* ring bytes, from the region size: never re-read from
                      shared memory, which another process may corrupt */
  int spin;        /* rounds to spin before sleeping, adapted per handle */
  int have_head;   /* head_seen holds a head read from the region */
  int have_tail;   /* tail_seen holds a tail read from the region */
  uint64_t head_seen; /* as a sender: head when last read (see ch_send) */
  uint64_t tail_seen; /* as a receiver: tail when last read (see ch_recv) */
  char *buf;       /* receive buffer: filled under the lock, pushed after */
  size_t bufsize;
  size_t fmtlen;   /* recvunpack: the last format found valid, when short */
  char fmt[32];    /* (fmtlen > sizeof fmt: none) */
} Channel;


/* How a send or receive ended, besides success. */
enum { CH_OK, CH_TIMEOUT, CH_CLOSED, CH_INTERRUPTED, CH_CORRUPT, CH_NOMEM,
       CH_EMPTY };

static const char *const ch_why[] = {"ok",      "timeout",   "closed",
                                     "interrupted", "corrupt", "no memory",
                                     "empty"}; /* one per value above */

static size_t round8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static uint64_t ring_capacity(size_t region) {
  return (uint64_t)(region - CH_HEADER) & ~(uint64_t)7u;
}

static ChHeader *header(const Channel *c) {
  return (ChHeader *)(void *)(c->seg->addr + c->off);
}

static unsigned char *ring(const Channel *c) {
  return c->seg->addr + c->off + CH_HEADER;
}

/* As for segments (seg_test): a tag instead of a metatable lookup. */
static const char ch_tag = 0;

/* The handle, without looking at its segment: methods check their
 * arguments (which may convert values and so run a finalizer that detaches
 * the segment), then ch_attached, then use the region with no Lua call in
 * between. */
static Channel *ch_check(lua_State *L) {
  Channel *c = (Channel *)lua_touserdata(L, 1);

  if (c == NULL || lua_rawlen(L, 1) != sizeof *c || c->tag != &ch_tag)
    luaL_typeerror(L, 1, CHANNEL_TNAME);

  return c;
}

static Channel *ch_attached(lua_State *L, Channel *c) {
  if (c->seg->addr == NULL)
    luaL_error(L, "attempt to use a channel in a detached segment");

  return c;
}

/* ---- locking ------------------------------------------------------------- */

/* CH_OK when locked (also from a dead owner: the queue is consistent at
 * every store), CH_TIMEOUT, CH_INTERRUPTED, or CH_CORRUPT for a lock word
 * that names this thread (no call keeps it held across calls). */
static int ch_lock(const ShmWaiter *wt, uint64_t *w,
                   const struct timespec *deadline) {
  switch (shm_lock(wt, w, deadline)) {
  case SHM_LOCK_OK:
  case SHM_LOCK_OWNERDIED:
    return CH_OK;
  case SHM_LOCK_TIMEOUT:
    return CH_TIMEOUT;
  case SHM_LOCK_INTERRUPTED:
    return CH_INTERRUPTED;
  default:
    return CH_CORRUPT;
  }
}

#define CH_SPIN_MAX 2048 /* rounds of cpu_relax before sleeping, at most */
#define CH_SPIN_MIN 16   /* and at least, once spinning (multi-core) */
#define CH_SPIN_LONG 0.001 /* seconds a sender waiting for room spins, at most */

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* The first spin budget: none with one processor, where the other side
 * cannot run while we spin. */
static int spin_start(void) {
  static int rounds = -1; /* racy but idempotent: every thread computes the same */

  if (rounds < 0)
    rounds = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? CH_SPIN_MAX / 4 : 0;

  return rounds;
}

/* Wait until *index moves away from stale (or the channel is closed, or
 * the deadline passes).  *index is the other side's position (head for a
 * sender, tail for a receiver), which only grows; the caller holds its own
 * side's lock, so stale is what it needs changed.  CH_OK when it is time
 * to look again (the index moved, a wake-up, a capped sleep ended; also
 * spurious: the caller re-checks), CH_TIMEOUT, or CH_INTERRUPTED when lua.c
 * has a signal (Ctrl-C) to raise as soon as we return.
 *
 * The eventcount.  Publisher (ch_publish): store index; load waiters; if
 * not zero, bump seq and wake.  Sleeper (here): waiters++; seen = load seq;
 * load index; sleep only if the index is still stale and *seq still seen.
 * All these are seq_cst, so they fall in one total order S.  If the
 * publisher's waiters load precedes the sleeper's waiters++ in S, then its
 * index store precedes the sleeper's index load (program order), and the
 * sleeper sees the new index and does not sleep.  Otherwise the publisher
 * sees waiters != 0 and bumps seq after its index store: either the bump
 * precedes the sleeper's seq load, and then so does the index store and the
 * sleeper's index load sees it; or seen is the old value, and futex_wait
 * (which compares and sleeps atomically with respect to FUTEX_WAKE on the
 * word) returns at once or is woken by the wake that follows the bump.
 * close() stores closed, then always bumps both seqs and wakes: the same
 * argument with closed for the index.  No wake-up is lost, so the 1 s cap
 * on each sleep only matters for a publisher killed between its store and
 * its wake.  A sleeper killed while counted leaves waiters above zero for
 * good: that costs the other side a bump and a wake call per message, never
 * a lost wake-up. */
/* Whether the deadline (none: NULL) has passed. */
static int ch_past(const struct timespec *deadline) {
  struct timespec now;

  if (deadline == NULL)
    return 0;

  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > deadline->tv_sec ||
         (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

static int ch_wait(const ShmWaiter *wt, Channel *c, const uint64_t *index,
                   uint64_t stale, uint64_t more, uint32_t *seq,
                   uint32_t *waiters, const uint32_t *closed,
                   const struct timespec *deadline) {
  struct timespec limit, until;
  uint32_t seen;
  /* looks at the index: after each pause while any move is enough; every
   * 16 pauses while waiting for `more`, so as not to pull the line that the
   * other side writes at each of its stores meanwhile */
  int step = more > 1 ? 16 : 1, capped, r, i, j;

  /* Looked at on every call, not only when sleeping: an index that keeps
   * moving without ever making room (a peer writing over it) must not keep
   * the caller past its deadline, or past Ctrl-C. */
  if (ch_past(deadline))
    return CH_TIMEOUT;

  if (sync_interrupted(wt))
    return CH_INTERRUPTED;

  /* The other side usually answers within microseconds: watch its index
   * for a while before paying for system calls and a context switch.  The
   * budget adapts: it grows while spinning pays, and shrinks while it does
   * not (the other side is descheduled, or has nothing to say).  While
   * spinning, wait for the index to move `more` (a sender: a quarter of
   * the ring, see ch_room), looking every 16 pauses (the budget counts
   * looks: such a spin lasts up to 16 times longer, 850 us at 26 ns a
   * pause, and never more than CH_SPIN_LONG); when the budget runs out,
   * any move is enough.  On a full ring, this made W7's single-call rows
   * 19-42% faster than taking each slot as soon as it was free
   * (bench/NOTES.md). */
  if (step > 1) {
    sync_deadline(&until, CH_SPIN_LONG);
    if (deadline != NULL && (deadline->tv_sec < until.tv_sec ||
                             (deadline->tv_sec == until.tv_sec &&
                              deadline->tv_nsec < until.tv_nsec)))
      until = *deadline;
  }

  for (i = 0; i < c->spin; i++) {
    if (__atomic_load_n(index, __ATOMIC_RELAXED) - stale >= more) {
      if (c->spin < CH_SPIN_MAX)
        c->spin *= 2;
      return CH_OK;
    }

    if (__atomic_load_n(closed, __ATOMIC_RELAXED)) /* the caller looks again */
      return CH_OK;

    /* a long spin stops after CH_SPIN_LONG seconds, whatever a pause
     * costs on this processor, or at the deadline if that comes first */
    if (step > 1 && (i & 63) == 63 && ch_past(&until))
      break;

    for (j = 0; j < step; j++)
      cpu_relax();
  }

  /* The spin did not get what it waited for: it did not pay, even if the
   * index moved a little meanwhile (a slow receiver), so shrink it;
   * otherwise a sender behind a receiver that frees a record now and then
   * would spin the whole budget at every wait, a processor for as long as
   * the receiver stays slow, and never sleep. */
  if (c->spin > CH_SPIN_MIN)
    c->spin /= 2;

  if (__atomic_load_n(index, __ATOMIC_RELAXED) != stale)
    return CH_OK;

  /* A sleep lasts at most a second before looking again: a process killed
   * between publishing and waking must not leave a sleeper waiting for
   * ever. */
  sync_deadline(&limit, 1.0);
  capped = deadline == NULL || deadline->tv_sec > limit.tv_sec ||
           (deadline->tv_sec == limit.tv_sec && deadline->tv_nsec > limit.tv_nsec);
  __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
  seen = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(index, __ATOMIC_SEQ_CST) != stale ||
      __atomic_load_n(closed, __ATOMIC_SEQ_CST))
    r = 1; /* moved (or closed) since we looked: no sleep */
  else
    r = sync_futexwait(wt, seq, seen, capped ? &limit : deadline);
  __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
  switch (r) {
  case 0: return capped ? CH_OK : CH_TIMEOUT;
  case 2: return CH_INTERRUPTED;
  default: return CH_OK; /* woken, or a failed wait: look again */
  }
}

/* After the seq_cst store of our index: wake the other side if it has
 * registered a sleeper (see ch_wait).  No atomic read-modify-write and no
 * system call while nobody sleeps. */
static void ch_publish(uint32_t *seq, uint32_t *waiters) {
  if (__atomic_load_n(waiters, __ATOMIC_SEQ_CST) != 0) {
    __atomic_fetch_add(seq, 1, __ATOMIC_SEQ_CST);
    sync_futexwake(seq, INT32_MAX);
  }
}

#if defined(__GNUC__)
#define CH_INLINE static inline __attribute__((always_inline))
#else
#define CH_INLINE static inline
#endif

/* The ring index of byte position pos: one division per call; records
 * then advance it with ring_skip.  Positions and the capacity are
 * multiples of 8, so a record's 8-byte length never wraps around the end;
 * its bytes may. */
static size_t ring_index(uint64_t cap, uint64_t pos) {
  return (size_t)(pos % cap);
}

static size_t ring_skip(size_t cap, size_t i, size_t n) {
  /* i < cap and n <= cap: one subtraction wraps */
  return n < cap - i ? i + n : i + n - cap;
}

/* Copy n bytes into / out of the ring from index i (< cap), wrapping
 * around its end (n <= cap). */
static void ring_put(unsigned char *r, size_t cap, size_t i, const void *src,
                     size_t n) {
  size_t room = cap - i;

  if (n <= room) {
    memcpy(r + i, src, n);
  } else {
    memcpy(r + i, src, room);
    memcpy(r, (const unsigned char *)src + room, n - room);
  }
}

static void ring_get(const unsigned char *r, size_t cap, size_t i, void *dst,
                     size_t n) {
  size_t room = cap - i;

  if (n == 0) /* dst may be NULL then: no buffer yet */
    return;

  if (n <= room) {
    memcpy(dst, r + i, n);
  } else {
    memcpy(dst, r + i, room);
    memcpy((unsigned char *)dst + room, r, n - room);
  }
}

/* Write a record at index i: its length, then its bytes (the padding is
 * left as it is).  Returns the index after the record. */
CH_INLINE size_t ring_write(unsigned char *r, size_t cap, size_t i,
                         const void *bytes, size_t len) {
  uint64_t n = len;

  memcpy(r + i, &n, 8);
  i = ring_skip(cap, i, 8);
  ring_put(r, cap, i, bytes, len);
  return ring_skip(cap, i, round8(len));
}

/* The length of the record at index i, read once from the ring. */
static uint64_t ring_reclen(const unsigned char *r, size_t i) {
  uint64_t n;

  memcpy(&n, r + i, 8);
  return n;
}

/* ---- operations ---------------------------------------------------------- */

/* What a send puts into the ring: a string's bytes, or a pack that
 * shm_packcheck accepted (sendpack). */
typedef struct ChMsg {
  size_t len;
  const char *bytes;     /* send: the message */
  const ShmPacker *pk;   /* sendpack: NULL for send */
  unsigned char *scratch; /* sendpack: len bytes, for a record that wraps */
} ChMsg;

/* A sender's start, with the send lock held: tail (ours while we hold the
 * lock), checked.  Bit 0 of tail is the closed flag (see the top); bits 1
 * and 2 are never set.  CH_OK, CH_CLOSED or CH_CORRUPT. */
static int ch_send_begin(const Channel *c, ChHeader *h, uint64_t *tail) {
  *tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
  if (*tail & 6)
    return CH_CORRUPT;

  if (*tail & 1) { /* closed, unless it is out of range */
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_SEQ_CST);

    return (*tail - 1 - head > c->cap || head % 8 != 0) ? CH_CORRUPT
                                                         : CH_CLOSED;
  }

  return CH_OK;
}

/* Room for a sender at tail, which holds the send lock: waits until at
 * least `first` bytes are free, reading head only when the free space the
 * handle knows of is less than `want` (>= first: what the caller would
 * like to write at once).  CH_OK with *free the bytes known free,
 * CH_CLOSED, CH_TIMEOUT, CH_INTERRUPTED or CH_CORRUPT.
 *
 * head_seen is a head this handle read earlier (validated then: a
 * multiple of 8, at most cap behind the tail of that moment).  Invariant,
 * for a region nobody corrupts: head_seen <= head <= tail and
 * tail - head <= cap, because head only grows and receivers never pass
 * tail.  So while tail - head_seen <= cap, cap - (tail - head_seen)
 * under-estimates the free space and is safe to write into without
 * reading head.  Other senders (other handles) may have moved tail since
 * head_seen was read, so tail - head_seen can exceed cap: then, as when
 * the cached value is not enough, read head again and validate it against
 * tail.  A corrupt tail (too far from head_seen) is caught by that
 * validation; positions are taken mod cap, so whatever passes stays
 * inside the ring. */
static int ch_room(ShmWaiter *wt, Channel *c, ChHeader *h, uint64_t tail,
                   uint64_t first, uint64_t want,
                   const struct timespec *deadline, uint64_t *free) {
  uint64_t cap = c->cap;

  for (;;) {
    uint64_t used = tail - c->head_seen, head, target;
    int why;

    if (__atomic_load_n(&h->closed, __ATOMIC_SEQ_CST))
      return CH_CLOSED;

    *free = (c->have_head && used <= cap) ? cap - used : 0;
    if (*free >= want)
      return CH_OK;

    head = __atomic_load_n(&h->head, __ATOMIC_SEQ_CST);
    if (tail - head > cap || head % 8 != 0) /* corrupt region */
      return CH_CORRUPT;

    c->head_seen = head;
    c->have_head = 1;
    *free = cap - (tail - head);
    if (*free >= first)
      return CH_OK;

    /* Full.  While spinning, wait for a quarter of the ring to be free
     * (or for `first`, if more): a sender that wrote into each slot as
     * soon as it was free would read head, and pull the line that the
     * receiver has just read, for every message while the ring stays
     * full.  Once the spin budget is spent, any room is enough, and a
     * sleeping sender is woken by any room: a send never waits while its
     * message fits. */
    target = cap / 4 > first ? cap / 4 : first;
    why = ch_wait(wt, c, &h->head, head, target - *free, &h->space_seq,
                  &h->send_waiters, &h->closed, deadline);
    if (why != CH_OK)
      return why;
  }
}

/* A sender's end: publish [tail, pos) with a compare-and-swap of tail,
 * which fails once closed (or if the word was overwritten: then the
 * records are not sent), and wake receivers that sleep.  CH_OK, CH_CLOSED
 * or CH_CORRUPT. */
static int ch_send_publish(ChHeader *h, uint64_t tail, uint64_t pos) {
  if (!__atomic_compare_exchange_n(&h->tail, &tail, pos, 0, __ATOMIC_SEQ_CST,
                                   __ATOMIC_SEQ_CST))
    return (tail & 1) ? CH_CLOSED : CH_CORRUPT;

  ch_publish(&h->data_seq, &h->recv_waiters);
  return CH_OK;
}

/* The body of send and sendpack (inlined into each): wait for room, write
 * the record, publish it.  Nothing here raises while the send lock is held:
 * a corrupt region is reported after unlocking; shm_packwrite makes no Lua
 * call that can fail.  CH_OK, CH_TIMEOUT, CH_CLOSED, CH_INTERRUPTED or
 * CH_CORRUPT. */
CH_INLINE int ch_put(lua_State *L, Channel *c, const ChMsg *m,
                     const struct timespec *deadline) {
  ChHeader *h = header(c);
  unsigned char *r = ring(c);
  size_t cap = (size_t)c->cap, len = m->len, i;
  uint64_t need = 8u + round8(len), tail, free;
  ShmWaiter wt;
  int why;

  sync_waitinit(&wt, L, c->main);
  why = ch_lock(&wt, &h->send_lock, deadline);
  if (why != CH_OK)
    return why;

  why = ch_send_begin(c, h, &tail);
  if (why == CH_OK)
    why = ch_room(&wt, c, h, tail, need, need, deadline, &free);
  if (why == CH_OK) {
    i = ring_index(cap, tail);
    if (m->pk == NULL) {
      ring_write(r, cap, i, m->bytes, len);
    } else {
      /* The message starts 8 bytes into its record; alignment is relative
       * to that start (position 0).  Packed in place when it does not
       * wrap, else into the scratch buffer and copied. */
      uint64_t n = len;

      memcpy(r + i, &n, 8);
      i = ring_skip(cap, i, 8);
      if (len <= cap - i) {
        shm_packwrite(L, m->pk, r + i, 0);
      } else {
        shm_packwrite(L, m->pk, m->scratch, 0);
        ring_put(r, cap, i, m->scratch, len);
      }
    }
    why = ch_send_publish(h, tail, tail + need);
  }

  (void)shm_unlock(&h->send_lock); /* not ours only if overwritten */
  return why;
}

/* send's and sendpack's results (raises for a corrupt region). */
static int ch_sent(lua_State *L, int why) {
  if (why == CH_CORRUPT)
    luaL_error(L, "channel region is corrupt (head, tail or lock word out "
                  "of range)");

  lua_pushboolean(L, why == CH_OK);
  if (why == CH_OK)
    return 1;

  lua_pushstring(L, ch_why[why]);
  return 2;
}

/* send's and sendpack's end, after their arguments: the deadline, the
 * attachment (the arguments may have run Lua code that detached it), the
 * send, the results. */
CH_INLINE int ch_sendmsg(lua_State *L, Channel *c, const ChMsg *m, int timed,
                         double seconds) {
  struct timespec deadline;

  if (timed)
    sync_deadline(&deadline, seconds);

  ch_attached(L, c);
  return ch_sent(L, ch_put(L, c, m, timed ? &deadline : NULL));
}

/***
 * Send a message; waits while the channel is full.
 * @function channel:send
 * @tparam string msg at most `ch:maxsize()` bytes
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout" or "closed"
 */
static int ch_send(lua_State *L) {
  Channel *c = ch_check(L);
  ChMsg m;
  double seconds;
  int timed;

  m.bytes = luaL_checklstring(L, 2, &m.len);
  m.pk = NULL;
  m.scratch = NULL;
  timed = sync_opttimeout(L, 3, &seconds);
  if (m.len > c->maxmsg)
    luaL_argerror(L, 2,
                  lua_pushfstring(L, "message of %I bytes is larger than the "
                                     "channel accepts (%I)",
                                  (lua_Integer)m.len, (lua_Integer)c->maxmsg));

  return ch_sendmsg(L, c, &m, timed, seconds);
}

/* Packs up to this size are staged on the C stack when they wrap around
 * the ring's end; larger ones in the handle's buffer. */
#define CH_PACK_STACK 256

/***
 * Send values packed with a `string.pack` format, as one message: the
 * channel counterpart of `segment:pack`.  The values are packed straight
 * into the channel's ring, with no Lua string in between; the message is
 * exactly the bytes `string.pack(fmt, ...)` would return, so `recv` gets
 * those bytes and a `send(string.pack(fmt, ...))` is received alike by
 * `recvunpack`.  Alignment (`!`, `X`) is relative to the message start, as
 * in a fresh `string.pack` string.
 *
 * The format decides how many values it takes; the argument after them is
 * the optional timeout, and more arguments are an error (string.pack would
 * ignore them; here a stray value would be taken for a timeout or refused).
 * Every value and the packed size are checked before anything is written:
 * a bad format or value, or a message larger than `ch:maxsize()`, raises
 * and sends nothing.  Waiting, timeouts and results are those of `send`.
 * @function channel:sendpack
 * @tparam string fmt a string.pack format
 * @param ... the values, then optionally the timeout in seconds
 *   (default: for ever)
 * @treturn[1] true
 * @treturn[2] false
 * @treturn[2] string "timeout" or "closed"
 * @usage ch:sendpack("<I8 d z", seq, 1.5, "name")      -- waits for room
 * ch:sendpack("<I8 d z", seq, 1.5, "name", 0.1) -- waits at most 0.1 s
 */
static int ch_sendpack(lua_State *L) {
  Channel *c = ch_check(L);
  const char *fmt = luaL_checkstring(L, 2);
  unsigned char small[CH_PACK_STACK];
  ShmPacker pk;
  ChMsg m;
  double seconds;
  int timed, targ;

  /* every value checked and converted; the size from position 0 */
  if (!shm_packcheck(L, &pk, fmt, 3, 0, (size_t)-1, &m.len))
    luaL_argerror(L, 2,
                  lua_pushfstring(L, "packed message is larger than the "
                                     "channel accepts (%I)",
                                  (lua_Integer)c->maxmsg));

  targ = pk.nextarg;
  timed = sync_opttimeout(L, targ, &seconds);
  if (lua_gettop(L) > targ)
    luaL_argerror(L, targ + 1,
                  "too many arguments (the format's values, then a timeout)");

  if (m.len > c->maxmsg)
    luaL_argerror(L, 2,
                  lua_pushfstring(L, "packed message of %I bytes is larger "
                                     "than the channel accepts (%I)",
                                  (lua_Integer)m.len, (lua_Integer)c->maxmsg));

  m.bytes = NULL;
  m.pk = &pk;
  m.scratch = small;
  if (m.len > sizeof small) { /* before locking: nothing may fail under it */
    if (m.len > c->bufsize) {
      char *nb = realloc(c->buf, m.len);

      if (nb == NULL)
        luaL_error(L, "not enough memory to send a message of %I bytes",
                   (lua_Integer)m.len);

      c->buf = nb;
      c->bufsize = m.len;
    }
    m.scratch = (unsigned char *)c->buf;
  }

  return ch_sendmsg(L, c, &m, timed, seconds);
}

/* A receiver's start, with the receive lock held: head (ours while we hold
 * the lock), checked.  CH_OK or CH_CORRUPT. */
static int ch_recv_begin(ChHeader *h, uint64_t *head) {
  *head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
  return *head % 8 != 0 ? CH_CORRUPT : CH_OK;
}

/* What is published from pos on, for a receiver that holds the receive
 * lock and took head as its start: from tail_seen when that says there is
 * something, else reading tail again, and when wait is set waiting for a
 * message.  CH_OK with *avail > 0 bytes; CH_EMPTY (wait not set) when
 * nothing more is published; CH_CLOSED (closed and nothing left),
 * CH_TIMEOUT, CH_INTERRUPTED or CH_CORRUPT.  *fresh: tail was read.
 *
 * tail_seen is a tail this handle read earlier (validated then).  For a
 * region nobody corrupts, tail_seen <= tail (tail only grows), so when
 * 0 < tail_seen - pos <= cap the bytes [pos, tail_seen) are published
 * and can be read without reading tail.  Other receivers may have moved
 * head past tail_seen (the difference then wraps above cap): read tail
 * again and validate it against head, as when the cached value says
 * empty.  Whatever passes keeps every read inside the ring: positions are
 * taken mod cap, and a record must fit in what is available. */
static int ch_published(ShmWaiter *wt, Channel *c, ChHeader *h, uint64_t head,
                        uint64_t pos, int wait, const struct timespec *deadline,
                        uint64_t *avail, int *fresh) {
  uint64_t cap = c->cap;

  *fresh = 0;
  for (;;) {
    uint64_t raw, tail;
    int why;

    *avail = c->tail_seen - pos;
    if (c->have_tail && *avail != 0 && *avail <= cap)
      return CH_OK;

    raw = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST);
    tail = raw & ~(uint64_t)1; /* bit 0: closed */
    if (!(raw & 1) && __atomic_load_n(&h->closed, __ATOMIC_SEQ_CST)) {
      /* close() sets the bit before the word: look again (a peer that set
       * the word alone gets "closed" too, once empty) */
      raw = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) | 1u;
      tail = raw & ~(uint64_t)1;
    }

    if (tail - head > cap || tail % 8 != 0 || tail - pos > tail - head)
      return CH_CORRUPT;

    c->tail_seen = tail;
    c->have_tail = 1;
    *fresh = 1;
    *avail = tail - pos;
    if (*avail != 0)
      return CH_OK;

    if (!wait)
      return CH_EMPTY;

    /* Closed and empty: no send can land after the bit (its
     * compare-and-swap fails), so nothing is left behind. */
    if (raw & 1)
      return CH_CLOSED;

    why = ch_wait(wt, c, &h->tail, raw, 1, &h->data_seq, &h->recv_waiters,
                  &h->closed, deadline);
    if (why != CH_OK)
      return why;
  }
}

/* The length of the record at index i, of which avail bytes are published:
 * CH_OK when it is one a sender could have written, else CH_CORRUPT. */
static int ch_reclen(const Channel *c, size_t i, uint64_t avail,
                     uint64_t *len) {
  *len = ring_reclen(ring(c), i);
  return (*len > avail - 8 || *len > c->maxmsg) ? CH_CORRUPT : CH_OK;
}

/* A receiver's end: consume up to pos and wake senders that sleep. */
static void ch_recv_publish(ChHeader *h, uint64_t pos) {
  __atomic_store_n(&h->head, pos, __ATOMIC_SEQ_CST);
  ch_publish(&h->space_seq, &h->send_waiters);
}

/* The body of recv and recvunpack (inlined into each): wait for a
 * message, copy it into c->buf (malloc'd: nothing raises under the lock),
 * consume it.  CH_OK with *plen its length, CH_TIMEOUT, CH_CLOSED,
 * CH_INTERRUPTED, CH_CORRUPT or CH_NOMEM (*plen the length then). */
CH_INLINE int ch_take(lua_State *L, Channel *c,
                      const struct timespec *deadline, uint64_t *plen) {
  ChHeader *h = header(c);
  size_t cap = (size_t)c->cap, i = 0;
  uint64_t head, avail, len = 0;
  ShmWaiter wt;
  int why, fresh;

  *plen = 0;
  sync_waitinit(&wt, L, c->main);
  why = ch_lock(&wt, &h->recv_lock, deadline);
  if (why != CH_OK)
    return why;

  why = ch_recv_begin(h, &head);
  if (why == CH_OK)
    why = ch_published(&wt, c, h, head, head, 1, deadline, &avail, &fresh);
  if (why == CH_OK) {
    i = ring_index(cap, head);
    why = ch_reclen(c, i, avail, &len);
  }
  if (why == CH_OK && len > c->bufsize) {
    /* malloc, not Lua: no error with the lock held */
    char *nb = realloc(c->buf, (size_t)len);

    if (nb == NULL) {
      why = CH_NOMEM;
    } else {
      c->buf = nb;
      c->bufsize = (size_t)len;
    }
  }
  if (why == CH_OK) {
    ring_get(ring(c), cap, ring_skip(cap, i, 8), c->buf, (size_t)len);
    ch_recv_publish(h, head + 8u + round8((size_t)len));
  }

  (void)shm_unlock(&h->recv_lock); /* not ours only if overwritten */
  *plen = len;
  return why;
}

/* recv's and recvunpack's receive, after their arguments: the deadline,
 * the attachment (the arguments may have run Lua code that detached it),
 * the take (see ch_take). */
CH_INLINE int ch_recvmsg(lua_State *L, Channel *c, int timed, double seconds,
                         uint64_t *len) {
  struct timespec deadline;

  if (timed)
    sync_deadline(&deadline, seconds);

  ch_attached(L, c);
  return ch_take(L, c, timed ? &deadline : NULL, len);
}

/* The receive buffer, taken out of the handle while Lua calls run on its
 * bytes (ch_buftake): a finalizer run by an allocation may receive on this
 * handle, and gets a buffer of its own; ch_bufgive puts back the larger of
 * the two and frees the other.  (If an allocation raises meanwhile, the
 * buffer taken is lost: once, on a memory error.) */
typedef struct ChBuf {
  char *p;
  size_t size;
} ChBuf;

static ChBuf ch_buftake(Channel *c) {
  ChBuf b;

  b.p = c->buf;
  b.size = c->bufsize;
  c->buf = NULL;
  c->bufsize = 0;
  return b;
}

static void ch_bufgive(Channel *c, ChBuf b) {
  if (c->buf != NULL && c->bufsize >= b.size) { /* a finalizer's is bigger */
    free(b.p);
  } else {
    free(c->buf);
    c->buf = b.p;
    c->bufsize = b.size;
  }
}

/* recv's and recvunpack's answer when no message was taken. */
static int ch_nomsg(lua_State *L, int why, uint64_t len) {
  switch (why) {
  case CH_CORRUPT:
    return luaL_error(L, "channel region is corrupt (bad message length)");

  case CH_NOMEM:
    return luaL_error(L, "not enough memory to receive a message of %I bytes",
                      (lua_Integer)len);

  default:
    lua_pushnil(L);
    lua_pushstring(L, ch_why[why]);
    return 2;
  }
}

/***
 * Receive a message; waits while the channel is empty.  After close, the
 * messages still queued are received first.
 * @function channel:recv
 * @tparam[opt] number timeout seconds (default: for ever)
 * @treturn[1] string the message
 * @treturn[2] nil
 * @treturn[2] string "timeout" or "closed"
 */
static int ch_recv(lua_State *L) {
  Channel *c = ch_check(L);
  double seconds;
  int timed = sync_opttimeout(L, 2, &seconds);
  uint64_t len;
  int why;

  why = ch_recvmsg(L, c, timed, seconds, &len);
  if (why != CH_OK)
    return ch_nomsg(L, why, len);

  lua_pushlstring(L, c->buf ? c->buf : "", (size_t)len);
  return 1;
}

/* recvunpack's error for a message that does not match its format (the
 * message is consumed by then).  ud: the RecvPack. */
typedef struct RecvPack {
  const char *fmt;
  size_t len;
} RecvPack;

SHM_NORETURN static void recv_mismatch(lua_State *L, int why, size_t pos,
                                       const void *ud) {
  const RecvPack *rp = (const RecvPack *)ud;

  if (why == SHM_UNPACK_SHORT)
    luaL_error(L, "message of %I bytes too short for format '%s' (item at "
                  "offset %I)",
               (lua_Integer)rp->len, rp->fmt, (lua_Integer)pos);
  else
    luaL_error(L, "message of %I bytes has an unfinished string for format "
                  "'z' (at offset %I) in format '%s'",
               (lua_Integer)rp->len, (lua_Integer)pos, rp->fmt);
  abort(); /* not reached: luaL_error raises */
}

/***
 * Receive the next message and unpack it with a `string.unpack` format:
 * the channel counterpart of `segment:unpack`.  The values are read
 * straight from the received bytes, with no Lua string for the whole
 * message (strings in the format, `c`, `s`, `z`, are Lua strings of
 * course).  Returns exactly what `string.unpack(fmt, ch:recv())` would:
 * the values, then the position after the last byte read (1-based, as
 * string.unpack's: the bytes read + 1).  Bytes after it are allowed and
 * ignored, as string.unpack does; compare the position with the expected
 * size to refuse them.  Alignment is relative to the message start.
 *
 * A bad format raises before anything is received.  A message that does
 * not match the format (too short for it, an `s` length past its end, a
 * `z` without its zero, a 9- to 16-byte integer that does not fit) is
 * consumed all the same, and the call raises ("message of N bytes too
 * short for format ..."): a queue must not jam on one bad message, and
 * a receiver that wants the raw bytes uses `recv`.
 * Waiting, timeouts and results are otherwise those of `recv`.
 * @function channel:recvunpack
 * @tparam string fmt a string.unpack format
 * @tparam[opt] number timeout seconds (default: for ever)
 * @return[1] the values, then the position after the last byte read
 * @treturn[2] nil
 * @treturn[2] string "timeout" or "closed"
 * @usage local seq, x, name = ch:recvunpack("<I8 d z")
 * local seq = ch:recvunpack("<I8 d z", 0.1) -- nil, "timeout" after 0.1 s
 */
static int ch_recvunpack(lua_State *L) {
  unsigned char small[256];
  const unsigned char *msg;
  Channel *c = ch_check(L);
  RecvPack rp;
  double seconds;
  int timed, why, n;
  uint64_t len;
  size_t pos = 0;

  rp.fmt = luaL_checklstring(L, 2, &rp.len);
  timed = sync_opttimeout(L, 3, &seconds);
  /* A bad format takes no message: check it first, unless it is the short
   * format this handle last found valid (the usual loop; the check is
   * ~120 instructions for "<I8c56", the comparison a few). */
  if (rp.len != c->fmtlen || memcmp(rp.fmt, c->fmt, rp.len) != 0) {
    shm_fmtcheck(L, rp.fmt);
    if (rp.len <= sizeof c->fmt) {
      memcpy(c->fmt, rp.fmt, rp.len);
      c->fmtlen = rp.len;
    }
  }
  why = ch_recvmsg(L, c, timed, seconds, &len);
  if (why != CH_OK)
    return ch_nomsg(L, why, len);

  /* Unpack from a copy the handle does not own: pushing the values may run
   * the garbage collector, and a finalizer may receive on this handle,
   * which refills (and may move) c->buf.  Small messages are copied to the
   * C stack before any Lua call; larger ones into a userdata kept on the
   * stack, with the handle's buffer taken out meanwhile (ch_buftake). */
  rp.len = (size_t)len;
  if (rp.len <= sizeof small) {
    if (rp.len > 0)
      memcpy(small, c->buf, rp.len);
    msg = small;
  } else {
    ChBuf mine = ch_buftake(c);
    void *copy = lua_newuserdatauv(L, rp.len, 0);

    memcpy(copy, mine.p, rp.len);
    ch_bufgive(c, mine);
    msg = (const unsigned char *)copy;
  }
  n = shm_unpack(L, rp.fmt, msg, rp.len, &pos, recv_mismatch, &rp);
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return n + 1;
}

/* ---- batches ------------------------------------------------------------- */

/* send_many stages at most this many messages per lock: their strings are
 * kept on the Lua stack meanwhile, and their pointers on the C stack. */
#define CH_BATCH 256

typedef struct ChItem {
  const char *bytes;
  size_t len;
} ChItem;

/* The body of send_many: with the send lock held once, write the runs of
 * items[0..n) that fit in the free space, each published with one
 * compare-and-swap of tail (and at most one wake-up), waiting for room
 * between runs as ch_put does.  *sent: the items published (a prefix).
 * CH_OK (all sent), CH_TIMEOUT, CH_CLOSED, CH_INTERRUPTED or CH_CORRUPT. */
static int ch_put_many(lua_State *L, Channel *c, const ChItem *items, int n,
                       const struct timespec *deadline, int *sent) {
  ChHeader *h = header(c);
  unsigned char *r = ring(c);
  size_t cap = (size_t)c->cap;
  uint64_t tail;
  ShmWaiter wt;
  int why, k = 0;

  *sent = 0;
  sync_waitinit(&wt, L, c->main);
  why = ch_lock(&wt, &h->send_lock, deadline);
  if (why != CH_OK)
    return why;

  why = ch_send_begin(c, h, &tail);
  while (why == CH_OK && k < n) {
    uint64_t want = 0, free, pos;
    size_t i;
    int j;

    /* What the whole rest needs, capped at the ring: head is read again
     * only when the known free space holds less of it (once per run). */
    for (j = k; j < n && want < cap; j++)
      want += 8u + round8(items[j].len);
    why = ch_room(&wt, c, h, tail, 8u + round8(items[k].len),
                  want < cap ? want : cap, deadline, &free);
    if (why != CH_OK)
      break;

    pos = tail;
    i = ring_index(cap, tail);
    for (j = k; j < n; j++) {
      uint64_t need = 8u + round8(items[j].len);

      if (need > free)
        break;

      i = ring_write(r, cap, i, items[j].bytes, items[j].len);
      pos += need;
      free -= need;
    }

    /* the run published at once, unless closed meanwhile */
    why = ch_send_publish(h, tail, pos);
    if (why == CH_OK) {
      tail = pos;
      k = j;
    }
  }

  (void)shm_unlock(&h->send_lock); /* not ours only if overwritten */
  *sent = k;
  return why;
}

/* A message of a batch, as ch_send checks it: a string or a number (which
 * lua_tolstring converts, on the stack only), at most maxmsg bytes. */
static const char *ch_checkitem(lua_State *L, const Channel *c, int idx,
                                lua_Integer i, size_t *len) {
  const char *s = NULL;
  int t = lua_type(L, idx);

  if (t == LUA_TSTRING || t == LUA_TNUMBER)
    s = lua_tolstring(L, idx, len);

  if (s == NULL)
    /* cppcheck-suppress invalidLengthModifierError ; Lua's %I, not printf's */
    luaL_error(L, "bad message #%I to 'send_many' (string expected, got %s)",
               i, luaL_typename(L, idx));

  if (*len > c->maxmsg)
    /* cppcheck-suppress invalidLengthModifierError ; Lua's %I, not printf's */
    luaL_error(L, "bad message #%I to 'send_many' (message of %I bytes is "
                  "larger than the channel accepts (%I))",
               i, (lua_Integer)*len, (lua_Integer)c->maxmsg);

  return s;
}

/***
 * Send the messages `list[1..#list]` (raw length and raw reads) in order,
 * as one batch: every message is checked first (a bad one raises and
 * sends nothing), then the messages are written under one lock per up to
 * 256 of them, and each run of them that fits in the free space is
 * published at once, with at most one wake-up.  Each message is delivered
 * exactly as a `send` of it would be: receivers see whole messages, in
 * order; several senders' batches may interleave between runs.  Waits
 * while the channel is full; when it stops early (timeout, close), the
 * messages already sent stay sent and the count says how many.  The list
 * must not change during the call.
 * @function channel:send_many
 * @tparam table list strings (or numbers), each at most `ch:maxsize()` bytes
 * @tparam[opt] number timeout seconds for the whole call (default: for ever)
 * @treturn[1] integer `#list`: all sent
 * @treturn[2] integer how many were sent (the first ones)
 * @treturn[2] string "timeout" or "closed"
 * @usage local n, why = ch:send_many({"a", "b", "c"}, 1.0)
 */
static int ch_send_many(lua_State *L) {
  Channel *c = ch_check(L);
  ChItem items[CH_BATCH];
  struct timespec deadline;
  double seconds;
  lua_Integer n, i, done = 0;
  int timed, why = CH_OK;

  luaL_checktype(L, 2, LUA_TTABLE);
  timed = sync_opttimeout(L, 3, &seconds);
  lua_settop(L, 3);
  n = (lua_Integer)lua_rawlen(L, 2);
  /* Everything is checked before anything is sent: by the staging below
   * when the list is one batch, else by a pass of its own first. */
  for (i = 1; n > CH_BATCH && i <= n; i++) {
    size_t len;

    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) != LUA_TNUMBER) /* numbers: checked when converted */
      ch_checkitem(L, c, -1, i, &len);
    lua_pop(L, 1);
  }

  if (timed)
    sync_deadline(&deadline, seconds);

  ch_attached(L, c); /* also for an empty list */
  luaL_checkstack(L, CH_BATCH, "too many messages");
  while (done < n && why == CH_OK) {
    int k, m = n - done < CH_BATCH ? (int)(n - done) : CH_BATCH, sent;

    /* Each message stays on the stack (a converted number is a new string
     * there) until the batch is sent; converting may run a finalizer. */
    for (k = 0; k < m; k++) {
      lua_rawgeti(L, 2, done + k + 1);
      items[k].bytes = ch_checkitem(L, c, -1, done + k + 1, &items[k].len);
    }

    ch_attached(L, c); /* after the Lua calls, which may have run Lua code */
    why = ch_put_many(L, c, items, m, timed ? &deadline : NULL, &sent);
    done += sent;
    lua_settop(L, 3);
  }

  if (why == CH_CORRUPT)
    luaL_error(L, "channel region is corrupt (head, tail or lock word out "
                  "of range)");

  lua_pushinteger(L, done);
  if (why == CH_OK)
    return 1;

  lua_pushstring(L, ch_why[why]);
  return 2;
}

/* Whether buf[0..used) holds exactly k records a sender could have
 * written: the batch's bytes are copied from the ring at once after their
 * lengths were checked there, and a peer may have changed a length in
 * between; what is pushed is read from the copy, so the copy is checked. */
static int ch_checkcopy(const Channel *c, const char *buf, size_t used,
                        lua_Integer k) {
  size_t at = 0;

  for (; k > 0; k--) {
    uint64_t len;

    if (used - at < 8)
      return 0;

    memcpy(&len, buf + at, 8);
    if (len > c->maxmsg || round8((size_t)len) > used - at - 8)
      return 0;

    at += 8u + round8((size_t)len);
  }

  return at == used;
}

/* The body of recv_many: wait for a message as ch_take does, then take up
 * to max queued ones: their lengths are checked in the ring, then their
 * records (an 8-byte length and the bytes padded to 8) are copied into
 * c->buf at once and checked again there; head is stored once for all of
 * them, with at most one wake-up.  CH_OK with *count messages in *size
 * bytes of c->buf; CH_TIMEOUT, CH_CLOSED, CH_INTERRUPTED, CH_CORRUPT, or
 * CH_NOMEM (*size the length that did not fit then). */
static int ch_take_many(lua_State *L, Channel *c, lua_Integer max,
                        const struct timespec *deadline, lua_Integer *count,
                        size_t *size) {
  ChHeader *h = header(c);
  size_t cap = (size_t)c->cap, used = 0, i = 0, start = 0;
  uint64_t head = 0, pos, avail;
  lua_Integer k = 0;
  ShmWaiter wt;
  int why, fresh, looked = 0;

  *count = 0;
  *size = 0;
  sync_waitinit(&wt, L, c->main);
  why = ch_lock(&wt, &h->recv_lock, deadline);
  if (why != CH_OK)
    return why;

  why = ch_recv_begin(h, &head);
  pos = head;
  while (why == CH_OK && k < max) {
    uint64_t len, rec;

    avail = c->tail_seen - pos;
    if (!c->have_tail || avail == 0 || avail > cap) {
      if (k > 0 && looked) /* what was there when we looked: enough */
        break;

      why = ch_published(&wt, c, h, head, pos, k == 0, deadline, &avail,
                         &fresh);
      if (why != CH_OK)
        break;

      looked |= fresh;
    }

    if (k == 0)
      i = start = ring_index(cap, head);
    why = ch_reclen(c, i, avail, &len);
    if (why != CH_OK)
      break;

    rec = 8u + round8((size_t)len); /* <= avail <= cap */
    if (c->bufsize - used < rec) { /* malloc, not Lua */
      size_t want = used + (size_t)rec;
      char *nb;

      if (want < 2 * c->bufsize)
        want = 2 * c->bufsize;
      nb = realloc(c->buf, want);
      if (nb == NULL) {
        if (k == 0) {
          why = CH_NOMEM;
          *size = (size_t)len;
        }
        break;
      }

      c->buf = nb;
      c->bufsize = want;
    }

    used += (size_t)rec;
    pos += rec;
    i = ring_skip(cap, i, (size_t)rec);
    k++;
  }

  /* The k messages found are consumed together.  A corrupt record (or no
   * memory) after them ends the batch early: they are delivered, and the
   * next call meets the bad record alone. */
  if (k > 0) {
    ring_get(ring(c), cap, start, c->buf, used);
    if (ch_checkcopy(c, c->buf, used, k)) {
      ch_recv_publish(h, pos);
      why = CH_OK;
    } else {
      why = CH_CORRUPT;
      k = 0;
    }
  }

  (void)shm_unlock(&h->recv_lock); /* not ours only if overwritten */
  *count = k;
  if (why == CH_OK)
    *size = used;
  return why;
}

/***
 * Receive a batch: wait for at least one message (as `recv` does), then
 * take up to `max` of the messages already queued, in one step (one lock,
 * one store of the consumed position, at most one wake-up).  Returns them
 * in a list, in order: a new table, or `into`, whose entries 1..n are
 * set and whose entries from n + 1 up to the first nil are cleared (raw
 * accesses), so that
 * a loop can reuse one table and allocate none per batch.  After close,
 * the messages still queued are received first.
 * @function channel:recv_many
 * @tparam integer max at most this many messages (>= 1)
 * @tparam[opt] number timeout seconds (default, or nil: for ever)
 * @tparam[opt] table into the list to fill
 * @treturn[1] table the messages (`into` when given)
 * @treturn[1] integer how many (n >= 1)
 * @treturn[2] nil
 * @treturn[2] string "timeout" or "closed"
 * @usage local list = {}
 * while true do
 *   local msgs, n = ch:recv_many(64, nil, list)
 *   if not msgs then break end
 *   for i = 1, n do handle(msgs[i]) end
 * end
 */
static int ch_recv_many(lua_State *L) {
  Channel *c = ch_check(L);
  lua_Integer max = shmL_checkint(L, 2), count, i;
  struct timespec deadline;
  double seconds;
  int timed = sync_opttimeout(L, 3, &seconds), why;
  ChBuf mine;
  size_t size, at;

  if (max < 1)
    luaL_argerror(L, 2, "max must be at least 1");

  if (!lua_isnoneornil(L, 4))
    luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  if (timed)
    sync_deadline(&deadline, seconds);

  ch_attached(L, c); /* after the arguments, which may have run Lua code */
  why = ch_take_many(L, c, max, timed ? &deadline : NULL, &count, &size);
  if (why != CH_OK)
    return ch_nomsg(L, why, (uint64_t)size);

  /* Push from the buffer taken out of the handle (ch_buftake). */
  mine = ch_buftake(c);
  if (lua_istable(L, 4))
    lua_pushvalue(L, 4);
  else
    lua_createtable(L, (int)(count < INT32_MAX ? count : INT32_MAX), 0);
  for (i = 1, at = 0; i <= count; i++) {
    uint64_t len;

    memcpy(&len, mine.p + at, 8); /* our own copy, checked when copied */
    lua_pushlstring(L, mine.p + at + 8, (size_t)len);
    lua_rawseti(L, -2, i);
    at += 8u + round8((size_t)len);
  }

  if (lua_istable(L, 4)) { /* clear what a longer batch left */
    for (i = count + 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_rawseti(L, -2, i);
    }
    lua_pop(L, 1);
  }

  ch_bufgive(c, mine);
  lua_pushinteger(L, count);
  return 2;
}

/***
 * Close the channel: senders get false, "closed"; receivers get what is
 * still queued, then nil, "closed".
 * @function channel:close
 */
static int ch_close(lua_State *L) {
  ChHeader *h = header(ch_attached(L, ch_check(L)));

  /* the bit first: sends fail from here on (see the top) */
  __atomic_fetch_or(&h->tail, 1u, __ATOMIC_SEQ_CST);
  __atomic_store_n(&h->closed, 1u, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&h->data_seq, 1, __ATOMIC_SEQ_CST);
  __atomic_fetch_add(&h->space_seq, 1, __ATOMIC_SEQ_CST);
  sync_futexwake(&h->data_seq, INT32_MAX);
  sync_futexwake(&h->space_seq, INT32_MAX);
  return 0;
}

/***
 * Whether the channel was closed.
 * @function channel:closed
 * @treturn boolean
 */
static int ch_closed(lua_State *L) {
  ChHeader *h = header(ch_attached(L, ch_check(L)));

  lua_pushboolean(L, (__atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) & 1) ||
                         __atomic_load_n(&h->closed, __ATOMIC_SEQ_CST));
  return 1;
}

/***
 * The largest message the channel accepts (half its region).
 * @function channel:maxsize
 * @treturn integer
 */
static int ch_maxsize(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)ch_attached(L, ch_check(L))->maxmsg);
  return 1;
}

/***
 * Bytes queued (records with their 8-byte headers and padding).
 * @function channel:pending
 * @treturn integer
 */
static int ch_pending(lua_State *L) {
  ChHeader *h = header(ch_attached(L, ch_check(L)));
  uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) & ~(uint64_t)1;
  uint64_t head = __atomic_load_n(&h->head, __ATOMIC_SEQ_CST);

  lua_pushinteger(L, (lua_Integer)(tail - head));
  return 1;
}

static int ch_gc(lua_State *L) {
  Channel *c = (Channel *)luaL_checkudata(L, 1, CHANNEL_TNAME);

  free(c->buf);
  c->buf = NULL;
  c->bufsize = 0;
  return 0;
}

static int ch_tostring(lua_State *L) {
  Channel *c = (Channel *)luaL_checkudata(L, 1, CHANNEL_TNAME);

  lua_pushfstring(L, "%s (segment %d, offset %I, %I bytes)", CHANNEL_TNAME,
                  c->seg->id, (lua_Integer)c->off, (lua_Integer)c->region);
  return 1;
}

/* ---- construction -------------------------------------------------------- */

static Channel *ch_push(lua_State *L, Segment *s, size_t off, size_t region) {
  Channel *c = (Channel *)shmL_newhandle(L, sizeof *c);

  c->tag = &ch_tag;
  c->main = sync_mainthread(L);
  c->spin = spin_start();
  /* have_head, have_tail 0: read the other side's index first */
  c->seg = s;
  c->off = off;
  c->region = region;
  c->maxmsg = region / 2;
  c->cap = ring_capacity(region);
  c->fmtlen = (size_t)-1;
  return c;
}

/* channel_new(seg [, off [, size]]) */
static int ch_new(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  size_t off = lua_isnoneornil(L, 2) ? 0 : shmL_checkaligned(L, 2, s, 0, CH_ALIGN);
  size_t region = shmL_optregion(L, 3, s, off);
  ChHeader *h;
  Channel *c;

  if (region < CH_MIN_REGION)
    luaL_argerror(L, lua_isnoneornil(L, 3) ? 2 : 3,
                  lua_pushfstring(L, "a channel needs at least %d bytes",
                                  (int)CH_MIN_REGION));

  c = ch_push(L, s, off, region);
  h = header(ch_attached(L, c)); /* the allocation may have run a finalizer */
  memset(h, 0, sizeof *h);
  h->capacity = c->cap;
  h->region = region;
  shm_lockinit(&h->send_lock);
  shm_lockinit(&h->recv_lock);
  h->version = CH_VERSION;
  __atomic_store_n(&h->magic, CH_MAGIC, __ATOMIC_SEQ_CST); /* last: ready */
  return 1;
}

/* channel_open(seg [, off]) */
static int ch_open(lua_State *L) {
  Segment *s = seg_checkw(L, 1);
  size_t off = lua_isnoneornil(L, 2) ? 0 : shmL_checkaligned(L, 2, s, 0, CH_ALIGN);
  ChHeader *h;
  uint64_t cap, region;

  if (s->size - off < CH_MIN_REGION)
    luaL_argerror(L, 2, "no channel here (region too small)");

  h = (ChHeader *)(void *)(s->addr + off);
  if (__atomic_load_n(&h->magic, __ATOMIC_SEQ_CST) != CH_MAGIC)
    luaL_argerror(L, 2, "no channel here (bad magic)");

  if (h->version != CH_VERSION) /* another build's protocol: see the top */
    luaL_argerror(L, 2,
                  lua_pushfstring(L, "channel of layout version %I, this module "
                                     "handles version %d only (made by another "
                                     "sysvshm build?)",
                                  (lua_Integer)h->version, (int)CH_VERSION));

  cap = h->capacity;
  region = h->region;
  if (region < CH_MIN_REGION || region > s->size - off || cap % 8 != 0 ||
      cap != ring_capacity((size_t)region))
    luaL_argerror(L, 2, "no channel here (sizes out of range)");

  ch_push(L, s, off, (size_t)region);
  return 1;
}

static const luaL_Reg ch_meth[] = {{"send", ch_send},
                                   {"recv", ch_recv},
                                   {"sendpack", ch_sendpack},
                                   {"recvunpack", ch_recvunpack},
                                   {"send_many", ch_send_many},
                                   {"recv_many", ch_recv_many},
                                   {"close", ch_close},
                                   {"closed", ch_closed},
                                   {"maxsize", ch_maxsize},
                                   {"pending", ch_pending},
                                   {NULL, NULL}};

static const luaL_Reg ch_metameth[] = {
    {"__gc", ch_gc}, {"__tostring", ch_tostring}, {NULL, NULL}};

void channel_open(lua_State *L) {
  lua_pushvalue(L, -1); /* upvalue 1: the segment metatable */
  luaL_newmetatable(L, CHANNEL_TNAME); /* upvalue 2 */
  luaL_setfuncs(L, ch_metameth, 0);
  luaL_newlib(L, ch_meth);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, ch_new, 2);
  lua_setfield(L, -5, "channel_new");
  lua_pushcclosure(L, ch_open, 2);
  lua_setfield(L, -3, "channel_open");

  lua_pushinteger(L, CH_HEADER); /* channel.lua's HEADER and MIN_SIZE */
  lua_setfield(L, -3, "CHANNEL_HEADER");
  lua_pushinteger(L, CH_MIN_REGION);
  lua_setfield(L, -3, "CHANNEL_MIN_SIZE");
}
