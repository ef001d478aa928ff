--[[ record_layout.lua: an example layout file for `sysvshm dump --layout`
and `sysvshm watch --layout`.

A layout file is a Lua chunk that returns either one layout made with
`sysvshm.layout.struct`, or (as here) a table of named layouts, from which
`--struct NAME` chooses; with a single layout in the table the option may be
left out. The file runs with the usual globals, so it can `require` shared
definitions, such as the module a program uses for its own layouts.

    id=$(sysvshm new --size 4K)
    sysvshm dump "$id" --layout lua/demo/record_layout.lua --struct record
    sysvshm watch "$id" --layout lua/demo/record_layout.lua --struct record --offset 0

The same struct for a C peer: `print(require("...").record:cdecl())`, or

    lua5.4 -e 'io.write(dofile("lua/demo/record_layout.lua").record:cdecl())'

Fields are `{name, type [, count]}`: `I4` a uint32_t, `i8` an int64_t, `d` a
double, `c16` 16 bytes of text, a layout a nested struct, and a count makes
an array. See the sysvshm.layout reference for the whole list.
]]
local layout = require "sysvshm.layout"

local point = layout.struct({
  { "x", "d" },
  { "y", "d" },
}, "point")

local record = layout.struct({
  { "magic", "I4" },     -- uint32_t magic
  { "version", "I2" },   -- uint16_t version
  { "flags", "I2" },     -- uint16_t flags
  { "count", "i8" },     -- int64_t count
  { "name", "c16" },     -- char name[16]
  { "samples", "d", 8 }, -- double samples[8]
  { "origin", point },   -- struct point origin
  { "path", point, 2 },  -- struct point path[2]
}, "record")

return {
  record = record,
  point = point,
}
