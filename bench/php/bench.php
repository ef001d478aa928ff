<?php
// The PHP APCu peer of W9 (../../shared/BENCH.md): the shared dictionary
// workload on APCu's shared memory, in one PHP process.
//
//     php -d apc.enable_cli=1 -d apc.shm_size=64M bench/php/bench.php [N]
//
// Prints the rows in bench.lua's format (R/F lines, tab-separated). APCu's
// memory is an anonymous shared mapping of the process (and of its forks,
// as in php-fpm): separate `php` processes do not share it, so there is no
// two-process row.

$N = isset($argv[1]) ? (int)$argv[1] : 2000000;
$NKEYS = 1000;

function out(...$f) { echo implode("\t", $f), "\n"; }
function rate($w, $label, $ok, $n, $t) {
    if ($ok) {
        out("R", $w, $label, "peer", sprintf("%.6g", $n / $t / 1e6), "M op/s", sprintf("%.6g", $t / $n * 1e9));
    } else {
        out("F", $w, $label, "peer", "check failed");
    }
}
function clock() { return hrtime(true) / 1e9; } // CLOCK_MONOTONIC

if (!function_exists("apcu_store") || !apcu_enabled()) {
    fwrite(STDERR, "is not enabled (php -d apc.enable_cli=1)\n");
    exit(1);
}
apcu_clear_cache();

$keys = []; $vals = []; $cnts = [];
for ($i = 0; $i < $NKEYS; $i++) {
    $keys[$i] = sprintf("key:%012d", $i + 1);
    $cnts[$i] = sprintf("cnt:%012d", $i + 1);
    $vals[$i] = sprintf("v%015d", $i + 1) . str_repeat("x", 48);
}

// bytes per entry: the 1000 keys in the empty cache
$sma = apcu_sma_info(true);
$cap = $sma["num_seg"] * $sma["seg_size"];
$free0 = $sma["avail_mem"];
for ($j = 0; $j < $NKEYS; $j++) {
    apcu_store($keys[$j], $vals[$j]);
}
$free1 = apcu_sma_info(true)["avail_mem"];
out("R", "W9 memory", "(shm_size - avail_mem) / entries", "peer",
    sprintf("%.6g", ($cap - $free1) / $NKEYS), "B/entry", "-");
out("R", "W9 memory", "(avail_mem empty - after) / entries", "peer",
    sprintf("%.6g", ($free0 - $free1) / $NKEYS), "B/entry", "-");

$t = clock();
for ($i = 0; $i < $N; $i++) {
    $j = $i % $NKEYS;
    apcu_store($keys[$j], $vals[$j]);
}
$t = clock() - $t;
$last = ($N - 1) % $NKEYS;
rate("W9 set", "apcu_store(k, v)", apcu_fetch($keys[$last]) === $vals[$last], $N, $t);

$x = null;
$t = clock();
for ($i = 0; $i < $N; $i++) {
    $x = apcu_fetch($keys[$i % $NKEYS]);
}
$t = clock() - $t;
rate("W9 get", "apcu_fetch(k)", $x === $vals[$last], $N, $t);

// apcu_inc creates a missing key (as incr(k, 1, 0)); the counters are
// stored as 0 first all the same, untimed, as older APCu did not
for ($j = 0; $j < $NKEYS; $j++) {
    apcu_store($cnts[$j], 0);
}
$t = clock();
for ($i = 0; $i < $N; $i++) {
    apcu_inc($cnts[$i % $NKEYS], 1);
}
$t = clock() - $t;
$ok = true;
for ($j = 0; $j < $NKEYS; $j++) {
    $ok = $ok && apcu_fetch($cnts[$j]) === intdiv($N, $NKEYS);
}
rate("W9 incr", "apcu_inc(k, 1)", $ok, $N, $t);

$gets = 0;
$t = clock();
for ($i = 0; $i < $N; $i++) {
    $j = $i % $NKEYS;
    if ($i % 20 == 0) {
        apcu_store($keys[$j], $vals[$j]);
    } elseif (apcu_fetch($keys[$j]) !== false) {
        $gets++;
    }
}
$t = clock() - $t;
rate("W9 95/5 1 proc", "get/set, 1 process", $gets == $N - intdiv($N, 20), $N, $t);
