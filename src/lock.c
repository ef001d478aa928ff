/*
 * The lock under shm.mutex and the channel: one 64-bit word in shared
 * memory, taken and released with compare-and-swap, slept on with a futex,
 * and taken over when its owner is found dead.  Nothing in the word is
 * ever used as a pointer: a peer that writes garbage over it can make a
 * lock look held (callers time out) or free, never make this process read
 * or write anywhere else.  (glibc's robust mutexes keep list pointers in
 * the mutex itself, which the unlocking process writes through.)
 *
 * The word (native byte order; the futex is its low 32-bit half):
 *   bits  0..21  owner thread id (Linux pids are below 2^22)
 *   bits 22..30  owner identity, low 9 bits
 *   bit  31      waiters: someone may sleep on the futex, unlock wakes
 *   bits 32..63  owner identity, high 32 bits
 * 0 is free.  The 41 identity bits are the owner's pid namespace (24 bits
 * of its nsfs inode number, 0 when unknown) and 17 bits of the thread's
 * start time (clock ticks since boot).  Owner and identity are stored by
 * the one compare-and-swap that takes the lock, so no reader ever sees one
 * without the other.
 *
 * Owner death.  A waiter that finds the same owner across a sleep judges
 * it (lock_dead): only an owner of its own pid namespace is judged, and
 * the owner is dead when no process has that thread id (kill(2) says
 * ESRCH), or the task with that id is a zombie, or started at another time
 * (the id was reused).  A live owner always matches its own start time,
 * so it is never declared dead; an owner that cannot be judged (another
 * pid namespace, /proc unreadable or of another namespace) is waited for
 * like a live one.  The waiter then takes the lock with one
 * compare-and-swap from the dead value, so one waiter wins, and is told
 * "owner died".
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sysvshm.h"

#define TID_MASK 0x3fffffu
#define WAITERS 0x80000000u
#define ID_LOW_SHIFT 22
#define ID_LOW_MASK 0x1ffu /* 9 bits */
#define START_BITS 17

/* ---- the identity of this thread ----------------------------------------- */

/* Computed once per thread, and again in the child after fork (the child is
 * a new process with the forking thread's copy of this variable).  The
 * initial-exec model makes each access one instruction instead of a call to
 * __tls_get_addr (12 bytes: well within the static TLS glibc keeps for
 * modules loaded with dlopen). */
static __thread __attribute__((tls_model("initial-exec"))) uint64_t self_word; /* the lock word this thread stores */
static __thread __attribute__((tls_model("initial-exec"))) uint32_t self_ns;   /* its namespace part, 0 if unknown */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forget_self(void) { self_word = 0; }
static void register_atfork(void) { pthread_atfork(NULL, NULL, forget_self); }

static uint64_t word_of(uint32_t tid, uint64_t ident) {
  return (uint64_t)tid | (uint64_t)(ident & ID_LOW_MASK) << ID_LOW_SHIFT |
         (ident >> 9) << 32;
}

static uint64_t ident_of(uint64_t w) {
  return (w >> ID_LOW_SHIFT & ID_LOW_MASK) | (w >> 32) << 9;
}

/* ns: 24 bits (1..0xffffff) from a namespace inode number.  nsfs numbers
 * are handed out consecutively from 0xf0000000 (the initial namespaces just
 * below), so two namespaces alive together differ here unless sixteen
 * million namespaces were made since boot. */
static uint32_t ns_tag(unsigned long long ino) {
  return (uint32_t)(ino % 0xffffffu) + 1u;
}

/* Read /proc/<tid>/stat: its state letter and start time.  0, or -1 with
 * errno (ENOENT: no such task visible in this /proc). */
static int proc_stat(long tid, long *pid, char *state,
                     unsigned long long *start) {
  char path[64], buf[1024];
  const char *p;
  ssize_t n;
  int fd, field;

  snprintf(path, sizeof path, "/proc/%ld/stat", tid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;

  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) {
    errno = EIO;
    return -1;
  }

  buf[n] = '\0';
  *pid = strtol(buf, NULL, 10);
  p = strrchr(buf, ')'); /* the command name may hold anything but this */
  if (p == NULL || p[1] != ' ' || p[2] == '\0') {
    errno = EIO;
    return -1;
  }

  *state = p[2];
  p += 3;
  for (field = 4; field < 22; field++) { /* starttime is field 22 */
    p = strchr(p + 1, ' ');
    if (p == NULL) {
      errno = EIO;
      return -1;
    }
  }

  *start = strtoull(p + 1, NULL, 10);
  return 0;
}

static uint64_t lock_self(void) {
  uint32_t tid, ns = 0;
  unsigned long long start = 0;
  struct stat st;
  long pid;
  char state;

  if (SHM_LIKELY(self_word != 0))
    return self_word;

  pthread_once(&atfork_once, register_atfork);
  tid = (uint32_t)syscall(SYS_gettid);
  /* Judge only with a /proc of our own pid namespace: it shows us under
   * our own id. */
  if (stat("/proc/self/ns/pid", &st) == 0 &&
      proc_stat((long)tid, &pid, &state, &start) == 0 && pid == (long)tid)
    ns = ns_tag((unsigned long long)st.st_ino);

  self_ns = ns;
  self_word = word_of(tid & TID_MASK,
                      (uint64_t)ns << START_BITS |
                          (start & ((1u << START_BITS) - 1)));
  return self_word;
}

/* 1 when the owner recorded in w is dead for sure, 0 when it is alive or
 * cannot be judged. */
static int lock_dead(uint64_t w) {
  uint64_t ident = ident_of(w);
  uint32_t ns = (uint32_t)(ident >> START_BITS);
  long tid = (long)(w & TID_MASK), pid;
  unsigned long long start;
  char state;

  lock_self();
  if (self_ns == 0 || ns != self_ns)
    return 0; /* another namespace, or ours unknown */

  if (tid == 0) /* no thread stores this: not a lock word of ours */
    return 1;

  if (kill((pid_t)tid, 0) != 0)
    return errno == ESRCH;

  if (proc_stat(tid, &pid, &state, &start) != 0)
    return 0; /* hidden (hidepid) or unreadable: cannot judge */

  if (pid != tid)
    return 0;

  if (state == 'Z' || state == 'X' || state == 'x')
    return 1;

  return (start & ((1u << START_BITS) - 1)) !=
         (ident & ((1u << START_BITS) - 1));
}

/* ---- the lock ------------------------------------------------------------ */

static uint32_t *futex_half(uint64_t *w) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return (uint32_t *)(void *)w + 1;
#else
  return (uint32_t *)(void *)w;
#endif
}

static void cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static int same_owner(uint64_t a, uint64_t b) {
  return ((a ^ b) & ~(uint64_t)WAITERS) == 0;
}

void shm_lockinit(uint64_t *w) {
  __atomic_store_n(w, 0, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, futex_half(w), FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

int shm_lockfast(uint64_t *w) {
  uint64_t v = 0;

  return __atomic_compare_exchange_n(w, &v, lock_self(), 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)
             ? SHM_LOCK_OK
             : SHM_LOCK_BUSY;
}

int shm_trylock(uint64_t *w) {
  uint64_t me = lock_self(), v = 0;

  if (__atomic_compare_exchange_n(w, &v, me, 0, __ATOMIC_ACQUIRE,
                                  __ATOMIC_RELAXED))
    return SHM_LOCK_OK;

  if (same_owner(v, me))
    return SHM_LOCK_DEADLK;

  /* Held: by a dead owner, take it over (one compare-and-swap from the
   * value judged, so only one taker wins). */
  if (lock_dead(v) &&
      __atomic_compare_exchange_n(w, &v, me | (v & WAITERS), 0,
                                  __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return SHM_LOCK_OWNERDIED;

  return SHM_LOCK_BUSY;
}

#define LOCK_SPIN 64
#define SLICE_FIRST_NS 2000000L   /* first sleep before judging the owner */
#define SLICE_MAX_NS 200000000L   /* and at most this between judgements */

static void add_ns(struct timespec *t, long ns) {
  t->tv_nsec += ns;
  while (t->tv_nsec >= 1000000000L) {
    t->tv_sec++;
    t->tv_nsec -= 1000000000L;
  }
}

static int before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int shm_lock(const ShmWaiter *wt, uint64_t *w, const struct timespec *deadline) {
  uint64_t me = lock_self(), v = 0;
  long slice = SLICE_FIRST_NS;
  int i;

  if (SHM_LIKELY(__atomic_compare_exchange_n(w, &v, me, 0, __ATOMIC_ACQUIRE,
                                             __ATOMIC_RELAXED)))
    return SHM_LOCK_OK;

  if (same_owner(v, me))
    return SHM_LOCK_DEADLK;

  /* Critical sections here are short: look a few times before sleeping. */
  for (i = 0; i < LOCK_SPIN; i++) {
    cpu_pause();
    v = __atomic_load_n(w, __ATOMIC_RELAXED);
    if (v == 0 && __atomic_compare_exchange_n(w, &v, me, 0, __ATOMIC_ACQUIRE,
                                              __ATOMIC_RELAXED))
      return SHM_LOCK_OK;
  }

  for (;;) {
    struct timespec until;
    uint64_t seen;
    int r;

    /* Looked at on every round: a word that keeps changing (a peer
     * scribbling on it) must not keep us past the deadline. */
    if (deadline != NULL) {
      clock_gettime(CLOCK_MONOTONIC, &until);
      if (!before(&until, deadline))
        return SHM_LOCK_TIMEOUT;
    }

    v = __atomic_load_n(w, __ATOMIC_RELAXED);
    if (v == 0) {
      /* Taken with the waiters bit: others may still sleep. */
      if (__atomic_compare_exchange_n(w, &v, me | WAITERS, 0, __ATOMIC_ACQUIRE,
                                      __ATOMIC_RELAXED))
        return SHM_LOCK_OK;
      continue;
    }

    if (same_owner(v, me))
      return SHM_LOCK_DEADLK;

    if (!(v & WAITERS)) {
      if (!__atomic_compare_exchange_n(w, &v, v | WAITERS, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED))
        continue;
      v |= WAITERS;
    }

    /* Sleep a slice, then judge the owner if it is still the same. */
    clock_gettime(CLOCK_MONOTONIC, &until);
    add_ns(&until, slice);
    if (deadline != NULL && before(deadline, &until))
      until = *deadline;

    seen = v;
    r = sync_futexwait(wt, futex_half(w), (uint32_t)seen, &until);
    if (r == 2)
      return SHM_LOCK_INTERRUPTED;

    if (r == 0 || r < 0) { /* the slice ended (or the wait failed) */
      if (deadline != NULL && !before(&until, deadline))
        return SHM_LOCK_TIMEOUT;

      v = __atomic_load_n(w, __ATOMIC_RELAXED);
      if (same_owner(v, seen) && lock_dead(v) &&
          __atomic_compare_exchange_n(w, &v, me | WAITERS, 0, __ATOMIC_ACQUIRE,
                                      __ATOMIC_RELAXED))
        return SHM_LOCK_OWNERDIED;

      if (slice < SLICE_MAX_NS)
        slice *= 2;
    }
  }
}

int shm_unlock(uint64_t *w) {
  uint64_t me = lock_self();
  uint64_t v = __atomic_load_n(w, __ATOMIC_RELAXED);
  long tries;

  /* Bounded: a peer flipping the waiters bit for ever must not hang us. */
  for (tries = 0; tries < 1000000L; tries++) {
    if (!same_owner(v, me))
      return SHM_LOCK_NOTOWNER;

    if (__atomic_compare_exchange_n(w, &v, 0, 0, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED)) {
      if (v & WAITERS)
        syscall(SYS_futex, futex_half(w), FUTEX_WAKE, 1, NULL, NULL, 0);
      return SHM_LOCK_OK;
    }
  }

  return SHM_LOCK_NOTOWNER;
}

int shm_lockheld(const uint64_t *w) {
  return same_owner(__atomic_load_n(w, __ATOMIC_RELAXED), lock_self());
}
