/*
 * Preloaded into lua5.4 after the sanitizer runtimes by tools/check.sh (the
 * asan gate): once the dynamic loader has used LD_PRELOAD, drop it from the
 * environment, so that the shells, compilers and tools the specs start do
 * not get the sanitizer runtimes (and their leak reports).  Children
 * started as "lua5.4" get them again from the gate's wrapper.
 */
#include <stdlib.h>

__attribute__((constructor)) static void drop_preload(void) {
  unsetenv("LD_PRELOAD");
}
