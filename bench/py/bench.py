"""The Python peer rows of the benchmark: sysv_ipc (Debian's python3-sysv-ipc).

    /usr/bin/python3 bench.py W1

prints one tab-separated line per row, as bench/run.sh expects:
    R  workload  label  kind  value  unit  ns-per-op
    F  workload  label  kind  reason
Segments are marked for removal right after they are attached; semaphores
are listed in $SYSVSHM_BENCH_IPC as soon as they exist (run.sh removes what
is left if this program is killed) and removed in a finally clause.
"""
import os
import sys
import time

import sysv_ipc

N = 1_000_000
SMALL = 1_048_576
BULK = 67_108_864
STEP = 7919
MSG = 64
SLOTS = 256
NMSG = 200_000
BULK_REPS = 10
CYCLES = 10_000

PAD = b"p" * (MSG - 8)
clock = time.perf_counter


def out(*fields):
    print("\t".join(str(f) for f in fields), flush=True)


def row(w, label, value, unit, ns):
    out("R", w, label, "peer", f"{value:.6g}", unit, f"{ns:.6g}")


def fail(w, label, why):
    out("F", w, label, "peer", why)


def rate(w, label, ok, n, t):
    if ok:
        row(w, label, n / t / 1e6, "M op/s", t / n * 1e9)
    else:
        fail(w, label, "check failed")


def registry(kind, ident):
    path = os.environ.get("SYSVSHM_BENCH_IPC")
    if path:
        with open(path, "a") as f:
            f.write(f"{kind} {ident}\n")


def private(size):
    """A new private segment, attached, already marked for removal."""
    mem = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=size)
    mem.remove()
    return mem


def pattern():
    return bytes(range(256)) * (SMALL // 256)


def pattern_at(off):
    return bytes((off + k) % 256 for k in range(8))


def w0():
    off = 0
    t = clock()
    for _ in range(N):
        off = (off + STEP) % (SMALL - 8)
    t = clock() - t
    rate("W0", "loop only (offset arithmetic)", True, N, t)


def w1():
    mem = private(SMALL)
    mem.write(pattern())
    off, x = 0, None
    t = clock()
    for _ in range(N):
        off = (off + STEP) % (SMALL - 8)
        x = mem.read(8, off)
    t = clock() - t
    rate("W1", "sysv_ipc mem.read(8, off)", x == pattern_at(off), N, t)

    mv = memoryview(mem)
    off = 0
    t = clock()
    for _ in range(N):
        off = (off + STEP) % (SMALL - 8)
        x = bytes(mv[off:off + 8])
    t = clock() - t
    rate("W1", "sysv_ipc bytes(memoryview[off:off+8])", x == pattern_at(off), N, t)
    mv.release()


def w2():
    mem = private(SMALL)
    off = 0
    t = clock()
    for _ in range(N):
        off = (off + STEP) % (SMALL - 8)
        mem.write(b"ABCDEFGH", off)
    t = clock() - t
    rate("W2", "sysv_ipc mem.write(s, off)", mem.read(8, off) == b"ABCDEFGH", N, t)

    mem.write(bytes(SMALL))
    mv = memoryview(mem)
    off = 0
    t = clock()
    for _ in range(N):
        off = (off + STEP) % (SMALL - 8)
        mv[off:off + 8] = b"ABCDEFGH"
    t = clock() - t
    rate("W2", "sysv_ipc memoryview[off:off+8] = s", mem.read(8, off) == b"ABCDEFGH", N, t)
    mv.release()


def w3():
    mem = private(BULK)
    big = b"\x07" * BULK
    mem.write(big)
    x = mem.read()
    tw = tr = 0.0
    for _ in range(BULK_REPS):
        t = clock()
        mem.write(big)
        tw += clock() - t
        x = None
        t = clock()
        x = mem.read()
        tr += clock() - t
    ok = x == big
    for w, label, tt in (("W3 write", "sysv_ipc mem.write(s)", tw),
                         ("W3 read", "sysv_ipc mem.read(), new bytes", tr)):
        if ok:
            row(w, label, BULK_REPS * BULK / tt / 1e9, "GB/s", tt / BULK_REPS * 1e9)
        else:
            fail(w, label, "read back differs")

    mv = memoryview(mem)
    mv[:] = big
    tw = tr = 0.0
    for _ in range(BULK_REPS):
        t = clock()
        mv[:] = big
        tw += clock() - t
        x = None
        t = clock()
        x = bytes(mv)
        tr += clock() - t
    ok = x == big
    mv.release()
    for w, label, tt in (("W3 write", "sysv_ipc memoryview[:] = s", tw),
                         ("W3 read", "sysv_ipc bytes(memoryview), new bytes", tr)):
        if ok:
            row(w, label, BULK_REPS * BULK / tt / 1e9, "GB/s", tt / BULK_REPS * 1e9)
        else:
            fail(w, label, "read back differs")


def w4():
    mem = private(SMALL)
    mv = memoryview(mem)
    off = 0
    t = clock()
    for i in range(N):
        off = (off + STEP) % SMALL
        mv[off] = i & 255
    t = clock() - t
    rate("W4 set", "sysv_ipc memoryview[off] = v", mv[off] == (N - 1) & 255, N, t)

    off, x = 0, None
    t = clock()
    for _ in range(N):
        off = (off + STEP) % SMALL
        x = mv[off]
    t = clock() - t
    rate("W4 get", "sysv_ipc memoryview[off]", x == (N - 1) & 255, N, t)
    mv.release()


def w5():
    t = clock()
    for _ in range(CYCLES):
        mem = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
        mem.detach()
        mem.remove()
    t = clock() - t
    row("W5", "sysv_ipc SharedMemory()/detach/remove (fills memory)",
        CYCLES / t / 1e3, "k/s", t / CYCLES * 1e9)


def w6():
    mem = private(SLOTS * MSG)
    empty = full = None
    try:
        empty = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, initial_value=SLOTS)
        registry("s", empty.id)
        full = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, initial_value=0)
        registry("s", full.id)
        t = clock()
        pid = os.fork()
        if pid == 0:  # the reader
            bad = 0
            try:
                for i in range(NMSG):
                    full.acquire()
                    m = mem.read(MSG, (i % SLOTS) * MSG)
                    empty.release()
                    if int.from_bytes(m[:8], "little") != i or m[8:] != PAD:
                        bad += 1
            finally:
                os._exit(0 if bad == 0 else 1)
        for i in range(NMSG):
            empty.acquire()
            mem.write(i.to_bytes(8, "little") + PAD, (i % SLOTS) * MSG)
            full.release()
        _, status = os.waitpid(pid, 0)
        t = clock() - t
        label = "sysv_ipc Semaphore + read/write"
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            row("W6", label, NMSG / t / 1e6, "M msg/s", t / NMSG * 1e9)
        else:
            fail("W6", label, "reader saw bad or missing messages")
    finally:
        for s in (empty, full):
            if s is not None:
                s.remove()


def w8():
    import struct
    mem = private(SMALL)
    mem.write(pattern())
    mv = memoryview(mem)
    off = 0
    t = clock()
    for i in range(N):
        off = (off + STEP) % (SMALL - 8)
        struct.pack_into("<q", mv, off, i)
    t = clock() - t
    rate("W8 pack", 'struct.pack_into("<q", memoryview, off, v)',
         struct.unpack_from("<q", mv, off)[0] == N - 1, N, t)

    off, x = 0, None
    t = clock()
    for _ in range(N):
        off = (off + STEP) % (SMALL - 8)
        x = struct.unpack_from("<q", mv, off)[0]
    t = clock() - t
    rate("W8 unpack", 'struct.unpack_from("<q", memoryview, off)', x == N - 1, N, t)
    mv.release()


WORKLOADS = {"W0": w0, "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5,
             "W6": w6, "W8": w8}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in WORKLOADS:
        sys.exit("usage: python3 bench.py " + "|".join(WORKLOADS))
    WORKLOADS[sys.argv[1]]()
