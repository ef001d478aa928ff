#!/usr/bin/perl
# The Perl peer rows of the benchmark: IPC::SysV (shmat, memread, memwrite,
# the builtin semop) and IPC::SharedMem / IPC::Semaphore, which ship with
# Debian's perl.  Both the fastest documented way (memread/memwrite on the
# address from shmat, prepacked semop strings) and the obvious one (the
# IPC::SharedMem and IPC::Semaphore objects).
#
#     perl bench.pl W1
#
# One tab-separated line per row, as bench/run.sh expects:
#     R  workload  label  kind  value  unit  ns-per-op
#     F  workload  label  kind  reason
# Segments are marked for removal right after they are attached; semaphore
# sets are listed in $SYSVSHM_BENCH_IPC as soon as they exist (run.sh
# removes what is left if this program is killed) and removed in END.
use strict;
use warnings;

use IPC::SysV qw(IPC_PRIVATE IPC_CREAT IPC_RMID S_IRUSR S_IWUSR SETALL
  shmat shmdt memread memwrite);
use IPC::SharedMem;
use IPC::Semaphore;
use POSIX ();
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);

use constant {
    N         => 1_000_000,
    SMALL     => 1_048_576,
    BULK      => 67_108_864,
    STEP      => 7919,
    MSG       => 64,
    SLOTS     => 256,
    NMSG      => 200_000,
    BULK_REPS => 10,
    CYCLES    => 10_000,
};

my $PAD = 'p' x (MSG - 8);
sub clock () { clock_gettime(CLOCK_MONOTONIC) }

$| = 1;

sub row {
    my ($w, $label, $value, $unit, $ns) = @_;
    printf "R\t%s\t%s\tpeer\t%.6g\t%s\t%.6g\n", $w, $label, $value, $unit, $ns;
}

sub fail {
    my ($w, $label, $why) = @_;
    print "F\t$w\t$label\tpeer\t$why\n";
}

sub rate {
    my ($w, $label, $ok, $n, $t) = @_;
    if ($ok) { row($w, $label, $n / $t / 1e6, 'M op/s', $t / $n * 1e9) }
    else     { fail($w, $label, 'check failed') }
}

sub registry {
    my ($kind, $id) = @_;
    my $path = $ENV{SYSVSHM_BENCH_IPC} or return;
    open my $f, '>>', $path or return;
    print $f "$kind $id\n";
    close $f;
}

my @semaphores;    # removed in END, and on SIGINT/SIGTERM
END { semctl($_, 0, IPC_RMID, 0) for @semaphores }
$SIG{INT} = $SIG{TERM} = sub { exit 1 };

# A private segment: (IPC::SharedMem object, address), attached and
# already marked for removal.
sub private {
    my ($size) = @_;
    my $shm = IPC::SharedMem->new(IPC_PRIVATE, $size, S_IRUSR | S_IWUSR)
      or die "shmget: $!";
    $shm->attach or die "shmat: $!";
    $shm->remove;
    return ($shm, $shm->addr);
}

sub pattern { join('', map { chr } 0 .. 255) x (SMALL / 256) }
sub pattern_at { my ($off) = @_; join '', map { chr(($off + $_) % 256) } 0 .. 7 }

my %W;

$W{W0} = sub {
    my $off = 0;
    my $t   = clock;
    for (1 .. N) { $off = ($off + STEP) % (SMALL - 8) }
    $t = clock - $t;
    rate('W0', 'loop only (offset arithmetic)', 1, N, $t);
};

$W{W1} = sub {
    my ($shm, $addr) = private(SMALL);
    memwrite($addr, pattern(), 0, SMALL);
    my ($off, $x, $t) = (0, '');
    $t = clock;
    for (1 .. N) {
        $off = ($off + STEP) % (SMALL - 8);
        memread($addr, $x, $off, 8);
    }
    $t = clock - $t;
    rate('W1', 'IPC::SysV memread (unchecked)', $x eq pattern_at($off), N, $t);

    $off = 0;
    $t   = clock;
    for (1 .. N) {
        $off = ($off + STEP) % (SMALL - 8);
        $x   = $shm->read($off, 8);
    }
    $t = clock - $t;
    rate('W1', 'IPC::SharedMem->read', $x eq pattern_at($off), N, $t);
};

$W{W2} = sub {
    my ($shm, $addr) = private(SMALL);
    memwrite($addr, "\0" x SMALL, 0, SMALL);    # touch every page before timing
    my ($off, $x, $t) = (0, '');
    $t = clock;
    for (1 .. N) {
        $off = ($off + STEP) % (SMALL - 8);
        memwrite($addr, 'ABCDEFGH', $off, 8);
    }
    $t = clock - $t;
    memread($addr, $x, $off, 8);
    rate('W2', 'IPC::SysV memwrite (unchecked)', $x eq 'ABCDEFGH', N, $t);

    memwrite($addr, "\0" x SMALL, 0, SMALL);
    $off = 0;
    $t   = clock;
    for (1 .. N) {
        $off = ($off + STEP) % (SMALL - 8);
        $shm->write('ABCDEFGH', $off, 8);
    }
    $t = clock - $t;
    rate('W2', 'IPC::SharedMem->write', $shm->read($off, 8) eq 'ABCDEFGH', N, $t);
};

$W{W3} = sub {
    my ($shm, $addr) = private(BULK);
    my $big = "\x07" x BULK;
    my $x   = '';
    memwrite($addr, $big, 0, BULK);
    memread($addr, $x, 0, BULK);
    my ($tw, $tr) = (0, 0);
    for (1 .. BULK_REPS) {
        my $t = clock;
        memwrite($addr, $big, 0, BULK);
        $tw += clock - $t;
        undef $x;    # frees the buffer: the next read allocates afresh
        $t = clock;
        memread($addr, $x, 0, BULK);
        $tr += clock - $t;
    }
    my $ok = $x eq $big;
    for (['W3 write', 'IPC::SysV memwrite', $tw],
        ['W3 read', 'IPC::SysV memread, new scalar', $tr])
    {
        my ($w, $label, $t) = @$_;
        if ($ok) { row($w, $label, BULK_REPS * BULK / $t / 1e9, 'GB/s', $t / BULK_REPS * 1e9) }
        else     { fail($w, $label, 'read back differs') }
    }
};

$W{W4} = sub {
    my ($shm, $addr) = private(SMALL);
    memwrite($addr, "\0" x SMALL, 0, SMALL);    # touch every page before timing
    my ($off, $x, $t) = (0, '');
    $t = clock;
    for my $i (0 .. N - 1) {
        $off = ($off + STEP) % SMALL;
        memwrite($addr, chr($i & 255), $off, 1);
    }
    $t = clock - $t;
    memread($addr, $x, $off, 1);
    rate('W4 set', 'IPC::SysV memwrite(chr v) (unchecked)', ord($x) == ((N - 1) & 255), N, $t);

    $off = 0;
    $t   = clock;
    for (1 .. N) {
        $off = ($off + STEP) % SMALL;
        memread($addr, $x, $off, 1);
        $x = ord $x;
    }
    $t = clock - $t;
    rate('W4 get', 'IPC::SysV ord memread (unchecked)', $x == ((N - 1) & 255), N, $t);
};

$W{W5} = sub {
    my $t = clock;
    for (1 .. CYCLES) {
        my $id = shmget(IPC_PRIVATE, 4096, S_IRUSR | S_IWUSR) // die "shmget: $!";
        my $addr = shmat($id, undef, 0) // die "shmat: $!";
        defined shmdt($addr) or die "shmdt: $!";
        shmctl($id, IPC_RMID, 0) or die "shmctl: $!";
    }
    $t = clock - $t;
    row('W5', 'shmget/IPC::SysV shmat/shmdt/shmctl', CYCLES / $t / 1e3, 'k/s', $t / CYCLES * 1e9);

    $t = clock;
    for (1 .. CYCLES) {
        my $shm = IPC::SharedMem->new(IPC_PRIVATE, 4096, S_IRUSR | S_IWUSR) // die "shmget: $!";
        $shm->attach or die "shmat: $!";
        $shm->detach;
        $shm->remove;
    }
    $t = clock - $t;
    row('W5', 'IPC::SharedMem new/attach/detach/remove', CYCLES / $t / 1e3, 'k/s', $t / CYCLES * 1e9);
};

# A set of two semaphores, empty = SLOTS (0) and full = 0 (1).
sub ring_semaphores {
    my $sem = IPC::Semaphore->new(IPC_PRIVATE, 2, S_IRUSR | S_IWUSR | IPC_CREAT)
      or die "semget: $!";
    push @semaphores, $sem->id;
    registry('s', $sem->id);
    $sem->setall(SLOTS, 0) or die "semctl: $!";
    return $sem;
}

# Fork the reader; time from just before the fork until it is reaped.
sub ring {
    my ($label, $writer, $reader) = @_;
    my $t   = clock;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $bad = eval { $reader->() } // 1;
        POSIX::_exit($bad == 0 ? 0 : 1);
    }
    $writer->();
    waitpid($pid, 0);
    $t = clock - $t;
    if ($? == 0) { row('W6', $label, NMSG / $t / 1e6, 'M msg/s', $t / NMSG * 1e9) }
    else         { fail('W6', $label, 'reader saw bad or missing messages') }
}

$W{W6} = sub {
    my ($shm, $addr) = private(SLOTS * MSG);

    # the fastest documented way: builtin semop with prepacked operations
    my $sem = ring_semaphores();
    my $id  = $sem->id;
    my ($P_empty, $V_empty, $P_full, $V_full) =
      map { pack 's!3', @$_ } [0, -1, 0], [0, 1, 0], [1, -1, 0], [1, 1, 0];
    ring(
        'semop + memread/memwrite',
        sub {
            for my $i (0 .. NMSG - 1) {
                semop($id, $P_empty) or die "semop: $!";
                memwrite($addr, pack('Q<', $i) . $PAD, ($i % SLOTS) * MSG, MSG);
                semop($id, $V_full) or die "semop: $!";
            }
        },
        sub {
            my ($bad, $m) = (0, '');
            for my $i (0 .. NMSG - 1) {
                semop($id, $P_full) or die "semop: $!";
                memread($addr, $m, ($i % SLOTS) * MSG, MSG);
                semop($id, $V_empty) or die "semop: $!";
                $bad++ unless unpack('Q<', $m) == $i && substr($m, 8) eq $PAD;
            }
            $bad;
        });

    # the obvious way: the objects' methods
    $sem->setall(SLOTS, 0) or die "semctl: $!";
    ring(
        'IPC::Semaphore->op + IPC::SharedMem',
        sub {
            for my $i (0 .. NMSG - 1) {
                $sem->op(0, -1, 0) or die "semop: $!";
                $shm->write(pack('Q<', $i) . $PAD, ($i % SLOTS) * MSG, MSG);
                $sem->op(1, 1, 0) or die "semop: $!";
            }
        },
        sub {
            my $bad = 0;
            for my $i (0 .. NMSG - 1) {
                $sem->op(1, -1, 0) or die "semop: $!";
                my $m = $shm->read(($i % SLOTS) * MSG, MSG);
                $sem->op(0, 1, 0) or die "semop: $!";
                $bad++ unless unpack('Q<', $m) == $i && substr($m, 8) eq $PAD;
            }
            $bad;
        });
};

$W{W8} = sub {
    my ($shm, $addr) = private(SMALL);
    memwrite($addr, "\0" x SMALL, 0, SMALL);    # touch every page before timing
    my ($off, $x, $t) = (0, '');
    $t = clock;
    for my $i (0 .. N - 1) {
        $off = ($off + STEP) % (SMALL - 8);
        memwrite($addr, pack('q<', $i), $off, 8);
    }
    $t = clock - $t;
    memread($addr, $x, $off, 8);
    rate('W8 pack', q{memwrite(pack('q<', v))}, unpack('q<', $x) == N - 1, N, $t);

    $off = 0;
    $t   = clock;
    for (1 .. N) {
        $off = ($off + STEP) % (SMALL - 8);
        memread($addr, $x, $off, 8);
        $x = unpack('q<', $x);
    }
    $t = clock - $t;
    rate('W8 unpack', q{unpack('q<', memread)}, $x == N - 1, N, $t);
};

my $w = $ARGV[0] // '';
die "usage: perl bench.pl " . join('|', sort keys %W) . "\n" unless $W{$w};
$W{$w}->();
