# Where the in-tree build is, relative to the repository root: the one place
# that says it. The Makefile includes this file; tools/intree.lua reads it
# (for .busted, spec/helpers.lua, tools/check.sh, the demos and bin/sysvshm).
# Plain NAME=value lines: make, sh and Lua all read them.
LUA_DIR=lua
BUILD=build
