/*
 * The C rows of the lock workload (bench/run.sh): what one lock and unlock
 * costs without Lua, for the lock word under shm.mutex and the channel
 * (src/lock.c, compiled in with the rest of src/ and linked with Lua, so
 * that its slow path is the module's own: no stub) and for what it
 * replaced, a glibc robust process-shared error-checking pthread mutex.
 *
 *   locks lock        uncontended lock + unlock, both locks in alternating
 *                     chunks in one process (same minute of the machine)
 *   locks pthread2p   two processes, each TURNS times: lock, counter + 1
 *   locks word2p      (a plain load and store), unlock
 *
 * Output: one tab-separated line per row (see bench/run.sh):
 *   R  workload  label  kind  value  unit  ns-per-op
 *   F  workload  label  kind  reason
 * Segments are marked for removal right after they are attached.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "sysvshm.h"

#define LOCK_N 4000000L /* uncontended lock + unlock pairs, per lock */
#define CHUNKS 20
#define TURNS 200000L /* contended: per process */

/* the segment: the pthread mutex, the lock word, a start line and the
 * counter, each on its own cache line */
#define OFF_PTHREAD 0
#define OFF_WORD 64
#define OFF_START 128
#define OFF_COUNT 192

static const char *const PTHREAD_LABEL =
    "glibc robust pshared errorcheck pthread_mutex (the old lock)";
static const char *const WORD_LABEL = "lock word, shm_lock + shm_unlock";

static double now(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void row(const char *w, const char *label, double value,
                const char *unit, double ns) {
  printf("R\t%s\t%s\tc\t%.6g\t%s\t%.6g\n", w, label, value, unit, ns);
}

static void fail(const char *w, const char *label, const char *why) {
  printf("F\t%s\t%s\tc\t%s\n", w, label, why);
}

static void die(const char *what, int err) {
  fprintf(stderr, "locks: %s: %s\n", what, strerror(err));
  exit(2);
}

/* A private segment, attached and already marked for removal. */
static unsigned char *private_segment(size_t size) {
  int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
  void *p;

  if (id < 0)
    die("shmget", errno);

  p = shmat(id, NULL, 0);
  if (p == (void *)-1) {
    int e = errno;

    shmctl(id, IPC_RMID, NULL);
    die("shmat", e);
  }

  shmctl(id, IPC_RMID, NULL);
  return p;
}

/* As the old sync.c initialised shm.mutex. */
static pthread_mutex_t *old_mutex(unsigned char *seg) {
  pthread_mutex_t *m = (pthread_mutex_t *)(void *)(seg + OFF_PTHREAD);
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);

  if (rc == 0)
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (rc == 0)
    rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (rc == 0)
    rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  if (rc == 0)
    rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  if (rc != 0)
    die("pthread_mutex_init", rc);

  return m;
}

static uint64_t *word_at(unsigned char *seg) {
  return (uint64_t *)(void *)(seg + OFF_WORD);
}

/* ---- uncontended ---------------------------------------------------------- */

static long pthread_pairs(pthread_mutex_t *m, long n) {
  long bad = 0, i;

  for (i = 0; i < n; i++) {
    bad += pthread_mutex_lock(m) != 0;
    bad += pthread_mutex_unlock(m) != 0;
  }

  return bad;
}

static long word_pairs(const ShmWaiter *wt, uint64_t *w, long n) {
  long bad = 0, i;

  for (i = 0; i < n; i++) {
    bad += shm_lock(wt, w, NULL) != SHM_LOCK_OK;
    bad += shm_unlock(w) != SHM_LOCK_OK;
  }

  return bad;
}

static int uncontended(lua_State *L) {
  unsigned char *seg = private_segment(4096);
  pthread_mutex_t *m = old_mutex(seg);
  uint64_t *w = word_at(seg);
  long chunk = LOCK_N / CHUNKS, badp = 0, badw = 0;
  double tp = 0, tw = 0, t;
  ShmWaiter wt;
  int c;

  shm_lockinit(w);
  sync_waitstart(L, &wt);
  /* warm-up: the lock word notes this thread's identity on first use */
  badp += pthread_pairs(m, 1000);
  badw += word_pairs(&wt, w, 1000);
  for (c = 0; c < CHUNKS; c++) {
    t = now();
    badp += pthread_pairs(m, chunk);
    tp += now() - t;
    t = now();
    badw += word_pairs(&wt, w, chunk);
    tw += now() - t;
  }

  /* both free at the end, as seen by a trylock */
  if (badp == 0 && pthread_mutex_trylock(m) == 0 &&
      pthread_mutex_unlock(m) == 0)
    row("lock", PTHREAD_LABEL, chunk * CHUNKS / tp / 1e6, "M op/s",
        tp / (chunk * CHUNKS) * 1e9);
  else
    fail("lock", PTHREAD_LABEL, "a lock or unlock failed");

  if (badw == 0 && __atomic_load_n(w, __ATOMIC_SEQ_CST) == 0 &&
      shm_trylock(w) == SHM_LOCK_OK && shm_unlock(w) == SHM_LOCK_OK)
    row("lock", WORD_LABEL, chunk * CHUNKS / tw / 1e6, "M op/s",
        tw / (chunk * CHUNKS) * 1e9);
  else
    fail("lock", WORD_LABEL, "a lock or unlock failed");

  return badp == 0 && badw == 0 ? 0 : 1;
}

/* ---- two processes ---------------------------------------------------------- */

/* Count in at the start line and wait (bounded) for the other side. */
static void start_line(unsigned char *seg) {
  uint64_t *s = (uint64_t *)(void *)(seg + OFF_START);
  double until = now() + 10;

  __atomic_add_fetch(s, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n(s, __ATOMIC_SEQ_CST) < 2)
    if (now() > until) {
      fprintf(stderr, "locks: the other process did not start\n");
      exit(2);
    }
}

/* TURNS times: lock, counter + 1 as a plain load and store, unlock.  The
 * number of failed calls. */
static long turns(int word, lua_State *L, unsigned char *seg) {
  volatile uint64_t *count = (volatile uint64_t *)(void *)(seg + OFF_COUNT);
  pthread_mutex_t *m = (pthread_mutex_t *)(void *)(seg + OFF_PTHREAD);
  uint64_t *w = word_at(seg);
  ShmWaiter wt;
  long bad = 0, i;

  sync_waitstart(L, &wt);
  start_line(seg);
  for (i = 0; i < TURNS; i++) {
    if (word) {
      bad += shm_lock(&wt, w, NULL) != SHM_LOCK_OK;
      *count = *count + 1;
      bad += shm_unlock(w) != SHM_LOCK_OK;
    } else {
      bad += pthread_mutex_lock(m) != 0;
      *count = *count + 1;
      bad += pthread_mutex_unlock(m) != 0;
    }
  }

  return bad;
}

static int contended(lua_State *L, int word) {
  unsigned char *seg = private_segment(4096);
  const char *label = word ? WORD_LABEL : PTHREAD_LABEL;
  double t;
  pid_t pid;
  long bad;
  int status;

  if (word)
    shm_lockinit(word_at(seg));
  else
    old_mutex(seg);

  fflush(stdout);
  t = now();
  pid = fork();
  if (pid < 0)
    die("fork", errno);

  if (pid == 0)
    _exit(turns(word, L, seg) == 0 ? 0 : 1);

  bad = turns(word, L, seg);
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      die("waitpid", errno);

  t = now() - t;
  if (bad == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
      *(volatile uint64_t *)(void *)(seg + OFF_COUNT) == 2 * (uint64_t)TURNS) {
    row("lock2p", label, 2 * TURNS / t / 1e6, "M op/s", t / (2 * TURNS) * 1e9);
    return 0;
  }

  fail("lock2p", label, "a call failed or the counter lost increments");
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate(); /* the waiter's interpreter (Ctrl-C) */
  int rc = 2;

  if (L == NULL)
    die("luaL_newstate", ENOMEM);

  if (argc == 2 && strcmp(argv[1], "lock") == 0)
    rc = uncontended(L);
  else if (argc == 2 && strcmp(argv[1], "pthread2p") == 0)
    rc = contended(L, 0);
  else if (argc == 2 && strcmp(argv[1], "word2p") == 0)
    rc = contended(L, 1);
  else
    fprintf(stderr, "usage: locks lock|pthread2p|word2p\n");

  lua_close(L);
  return rc;
}
