/*
 * A minimal Lua 5.4 interpreter for profiling (bench/profile.sh): the same
 * Lua as lua5.4, linked from Debian's liblua5.4.a, whose symbols are kept,
 * so that callgrind can name the VM's functions (Debian's lua5.4 binary is
 * stripped).  Linked with -Wl,-E so that sysvshm/core.so finds the Lua API.
 *
 *   plua script.lua args...
 */
#include <stdio.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

int main(int argc, char **argv) {
  lua_State *L;
  int i, status;

  if (argc < 2) {
    fprintf(stderr, "usage: plua script.lua args...\n");
    return 2;
  }

  L = luaL_newstate();
  luaL_openlibs(L);
  lua_createtable(L, argc, 2); /* arg, as lua.c builds it */
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");

  status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (i = 2; i < argc; i++)
      lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 0);
  }

  if (status != LUA_OK) {
    fprintf(stderr, "plua: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }

  lua_close(L);
  return 0;
}
