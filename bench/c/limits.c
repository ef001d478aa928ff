/*
 * The C limit rows of the benchmark (../../shared/BENCH.md): what the
 * hardware and the kernel allow, without any binding in the way.
 *
 *   limits w3         64 MiB memcpy into a warm segment, out of it into a
 *                     warm buffer and into a fresh allocation per read
 *   limits w5         the create/attach/detach/remove cycle
 *   limits w6atomic   SPSC ring of 64-byte messages with C11 atomics
 *   limits w6sem      the same ring synchronised with SysV semop
 *   limits w6pipe     64-byte writes on a pipe
 *
 * Output: one tab-separated line per row (see bench/run.sh):
 *   R  workload  label  kind  value  unit  ns-per-op
 *   F  workload  label  kind  reason
 * Every segment is marked for removal right after it is attached; every
 * semaphore set is written to $SYSVSHM_BENCH_IPC first, so that run.sh can
 * remove it if this program is killed, and removed on SIGINT/SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>

#define SMALL_STEP 7919
#define BULK ((size_t)64 << 20)
#define BULK_REPS 10
#define CYCLES 10000
#define MSG 64
#define SLOTS 256
#define NMSG 200000

static double now(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keep the compiler from dropping a copy into memory it can see unused. */
static void escape(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static void row(const char *w, const char *label, double value,
                const char *unit, double ns) {
  printf("R\t%s\t%s\tc\t%.6g\t%s\t%.6g\n", w, label, value, unit, ns);
}

static void fail(const char *w, const char *label, const char *why) {
  printf("F\t%s\t%s\tc\t%s\n", w, label, why);
}

static void die(const char *what) {
  fprintf(stderr, "limits: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void registry(char kind, int id) {
  const char *path = getenv("SYSVSHM_BENCH_IPC");
  FILE *f;

  if (path == NULL || (f = fopen(path, "a")) == NULL)
    return;

  fprintf(f, "%c %d\n", kind, id);
  fclose(f);
}

/* A private segment, attached and already marked for removal. */
static unsigned char *private_segment(size_t size) {
  int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
  void *p;

  if (id < 0)
    die("shmget");

  p = shmat(id, NULL, 0);
  if (p == (void *)-1) {
    shmctl(id, IPC_RMID, NULL);
    die("shmat");
  }

  shmctl(id, IPC_RMID, NULL);
  return p;
}

/* ---- W3 ------------------------------------------------------------------ */

static int w3(void) {
  unsigned char *seg = private_segment(BULK);
  unsigned char *src = malloc(BULK), *warm = malloc(BULK), *dst = NULL;
  double tw = 0, tr = 0, trw = 0, t;
  int i, ok = 1;

  if (src == NULL || warm == NULL)
    die("malloc");

  memset(src, 7, BULK);
  memcpy(seg, src, BULK); /* warm-up write and reads */
  memcpy(warm, seg, BULK);
  for (i = 0; i < BULK_REPS; i++) {
    t = now();
    memcpy(seg, src, BULK);
    escape(seg);
    tw += now() - t;

    t = now();
    memcpy(warm, seg, BULK);
    escape(warm);
    trw += now() - t;

    t = now();
    dst = malloc(BULK);
    if (dst == NULL)
      die("malloc");
    memcpy(dst, seg, BULK);
    escape(dst);
    tr += now() - t;
    if (i == BULK_REPS - 1)
      ok = memcmp(dst, src, BULK) == 0 && memcmp(warm, src, BULK) == 0;
    free(dst);
  }

  if (!ok) {
    fail("W3 write", "memcpy, warm segment", "read back differs");
    fail("W3 read", "memcpy into fresh malloc", "read back differs");
    fail("W3 read", "memcpy into warm buffer", "read back differs");
    return 1;
  }

  row("W3 write", "memcpy, warm segment", BULK_REPS * (double)BULK / tw / 1e9,
      "GB/s", tw / BULK_REPS * 1e9);
  row("W3 read", "memcpy into fresh malloc", BULK_REPS * (double)BULK / tr / 1e9,
      "GB/s", tr / BULK_REPS * 1e9);
  row("W3 read", "memcpy into warm buffer",
      BULK_REPS * (double)BULK / trw / 1e9, "GB/s", trw / BULK_REPS * 1e9);
  return 0;
}

/* ---- W5 ------------------------------------------------------------------ */

static int w5(void) {
  double t = now();
  int i;

  for (i = 0; i < CYCLES; i++) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    void *p;

    if (id < 0)
      die("shmget");

    p = shmat(id, NULL, 0);
    if (p == (void *)-1) {
      shmctl(id, IPC_RMID, NULL);
      die("shmat");
    }

    if (shmdt(p) != 0 || shmctl(id, IPC_RMID, NULL) != 0)
      die("shmdt/shmctl");
  }

  t = now() - t;
  row("W5", "shmget/shmat/shmdt/shmctl", CYCLES / t / 1e3, "k/s",
      t / CYCLES * 1e9);
  return 0;
}

/* ---- W6 ------------------------------------------------------------------ */

static unsigned char PAD[MSG - 8];

static void make_msg(unsigned char *m, uint64_t i) {
  int b;

  for (b = 0; b < 8; b++)
    m[b] = (unsigned char)(i >> (8 * b));

  memcpy(m + 8, PAD, sizeof PAD);
}

static int msg_ok(const unsigned char *m, uint64_t i) {
  uint64_t v = 0;
  int b;

  for (b = 7; b >= 0; b--)
    v = (v << 8) | m[b];

  return v == i && memcmp(m + 8, PAD, sizeof PAD) == 0;
}

/* Run reader() in a child; the parent writes.  Time from just before the
 * fork until the child is reaped.  Returns the child's success. */
static int run_pair(void (*writer)(void *), void (*reader)(void *), void *ctx,
                    double *elapsed) {
  double t = now();
  pid_t pid;
  int status;

  fflush(stdout);
  pid = fork();
  if (pid < 0)
    die("fork");

  if (pid == 0) {
    reader(ctx);
    _exit(3); /* not reached */
  }

  writer(ctx);
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      die("waitpid");

  *elapsed = now() - t;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* atomics: head and tail on their own cache lines, then the ring */
typedef struct Ring {
  _Atomic uint64_t head;
  char pad0[56];
  _Atomic uint64_t tail;
  char pad1[56];
  unsigned char slot[SLOTS][MSG];
} Ring;

static void relax(unsigned *spins) {
  if (++*spins < 1000) {
    __builtin_ia32_pause();
  } else {
    *spins = 0;
    sched_yield(); /* the other side may have lost its core */
  }
}

static void atomic_writer(void *ctx) {
  Ring *r = ctx;
  uint64_t i, head = 0;

  for (i = 0; i < NMSG; i++) {
    unsigned spins = 0;

    while (i - head >= SLOTS) {
      head = atomic_load_explicit(&r->head, memory_order_acquire);
      if (i - head >= SLOTS)
        relax(&spins);
    }

    make_msg(r->slot[i % SLOTS], i);
    atomic_store_explicit(&r->tail, i + 1, memory_order_release);
  }
}

static void atomic_reader(void *ctx) {
  Ring *r = ctx;
  uint64_t i, tail = 0, bad = 0;
  unsigned char m[MSG];

  for (i = 0; i < NMSG; i++) {
    unsigned spins = 0;

    while (i >= tail) {
      tail = atomic_load_explicit(&r->tail, memory_order_acquire);
      if (i >= tail)
        relax(&spins);
    }

    memcpy(m, r->slot[i % SLOTS], MSG);
    atomic_store_explicit(&r->head, i + 1, memory_order_release);
    bad += !msg_ok(m, i);
  }

  _exit(bad == 0 ? 0 : 1);
}

/* semop: two counting semaphores, empty = SLOTS (0) and full = 0 (1) */
static int semid = -1;
static unsigned char *semring;

static void semop1(unsigned short num, short op) {
  struct sembuf b;

  b.sem_num = num;
  b.sem_op = op;
  b.sem_flg = 0;
  while (semop(semid, &b, 1) != 0)
    if (errno != EINTR)
      die("semop");
}

static void sem_writer(void *ctx) {
  uint64_t i;

  (void)ctx;
  for (i = 0; i < NMSG; i++) {
    semop1(0, -1);
    make_msg(semring + (i % SLOTS) * MSG, i);
    semop1(1, 1);
  }
}

static void sem_reader(void *ctx) {
  uint64_t i, bad = 0;
  unsigned char m[MSG];

  (void)ctx;
  for (i = 0; i < NMSG; i++) {
    semop1(1, -1);
    memcpy(m, semring + (i % SLOTS) * MSG, MSG);
    semop1(0, 1);
    bad += !msg_ok(m, i);
  }

  _exit(bad == 0 ? 0 : 1);
}

static void remove_sem(void) {
  if (semid >= 0)
    semctl(semid, 0, IPC_RMID);
  semid = -1;
}

static void on_signal(int sig) {
  remove_sem();
  signal(sig, SIG_DFL);
  raise(sig);
}

/* pipe */
static int pfd[2];

static void pipe_writer(void *ctx) {
  unsigned char m[MSG];
  uint64_t i;

  (void)ctx;
  close(pfd[0]);
  for (i = 0; i < NMSG; i++) {
    make_msg(m, i);
    if (write(pfd[1], m, MSG) != MSG)
      die("write");
  }

  close(pfd[1]);
}

static void pipe_reader(void *ctx) {
  unsigned char m[MSG];
  uint64_t i, bad = 0;

  (void)ctx;
  close(pfd[1]);
  for (i = 0; i < NMSG; i++) {
    size_t got = 0;

    while (got < MSG) {
      ssize_t n = read(pfd[0], m + got, MSG - got);

      if (n <= 0)
        _exit(1);
      got += (size_t)n;
    }

    bad += !msg_ok(m, i);
  }

  _exit(bad == 0 ? 0 : 1);
}

static void w6_result(const char *label, int ok, double t) {
  if (ok)
    row("W6", label, NMSG / t / 1e6, "M msg/s", t / NMSG * 1e9);
  else
    fail("W6", label, "reader saw bad or missing messages");
}

static int w6(const char *which) {
  double t;
  int ok;

  memset(PAD, 'p', sizeof PAD);
  if (strcmp(which, "w6atomic") == 0) {
    Ring *r = (Ring *)(void *)private_segment(sizeof(Ring));

    ok = run_pair(atomic_writer, atomic_reader, r, &t);
    w6_result("atomics SPSC ring (C11), spinning", ok, t);
  } else if (strcmp(which, "w6sem") == 0) {
    union {
      int val;
      struct semid_ds *buf;
      unsigned short *array;
    } arg;
    unsigned short init[2] = {SLOTS, 0};

    semring = private_segment((size_t)SLOTS * MSG);
    semid = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    if (semid < 0)
      die("semget");

    registry('s', semid);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    arg.array = init;
    if (semctl(semid, 0, SETALL, arg) != 0) {
      remove_sem();
      die("semctl");
    }

    ok = run_pair(sem_writer, sem_reader, NULL, &t);
    remove_sem();
    w6_result("semop ring (2 counting semaphores)", ok, t);
  } else {
    if (pipe(pfd) != 0)
      die("pipe");

    ok = run_pair(pipe_writer, pipe_reader, NULL, &t);
    w6_result("pipe, 64-byte writes", ok, t);
  }

  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "w3") == 0)
    return w3();

  if (argc == 2 && strcmp(argv[1], "w5") == 0)
    return w5();

  if (argc == 2 && (strcmp(argv[1], "w6atomic") == 0 ||
                    strcmp(argv[1], "w6sem") == 0 ||
                    strcmp(argv[1], "w6pipe") == 0))
    return w6(argv[1]);

  fprintf(stderr, "usage: limits w3|w5|w6atomic|w6sem|w6pipe\n");
  return 2;
}
