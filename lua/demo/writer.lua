--[[ writer.lua: the seed's server.cpp in Lua.

    lua5.4 lua/demo/writer.lua [--path P] [--proj N] [--interval S] [--count N]

Creates a 4096-byte System V shared memory segment with the key
ftok(P, N) and appends an 'A' to the C string it holds every S seconds,
always keeping a NUL after it, so that reader.lua can print it.

Wrapping: the longest string that fits is 4095 'A's (bytes 0..4094) with its
NUL in byte 4095, the last byte. The append after that starts over at byte 0,
giving "A" again (the old 'A's behind the new NUL are no longer part of the
string). Nothing is ever written past byte 4095; the segment's methods would
raise an error rather than do so.

Cleanup: the writer removes its segment when it has made --count appends,
when anything fails, and on Ctrl-C (SIGINT), which lua5.4 turns into an
"interrupted!" error that the pcall below catches. Lua has no way to catch
SIGTERM, SIGHUP or SIGKILL: they leave the segment behind. Remove it with
`ipcrm -m ID` (the id is printed at start) or find it with `ipcs -m`.

Exit status: 0 when done, 1 on an error, 2 on a bad command line, 130 after
Ctrl-C.
]]

-- Run from a checkout after `make`, find the modules there; installed, or
-- with LUA_PATH_5_4/LUA_CPATH_5_4 set, the usual search paths still apply
-- (prelude.lua only adds to them).
dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")

local shm = require "sysvshm"
local options = require "sysvshm.options"

local SIZE = 4096 -- bytes, as in the seed
local PROG = "writer.lua"

local cli = options.new {
  prog = PROG,
  description = "Create a shared memory segment and append an 'A' to its string every interval.",
  epilog = "Ctrl-C stops the writer and removes the segment.",
  { "path", default = "/tmp", metavar = "P", help = "existing file for ftok" },
  { "proj", type = "integer", default = 0x66, default_text = "0x66", min = 1, max = 255,
    metavar = "N", help = "ftok project id, 1..255" },
  { "interval", type = "number", default = 1, min = 0, metavar = "S",
    help = "seconds between appends" },
  { "count", type = "integer", min = 1, metavar = "N",
    help = "stop after N appends (default: run forever)" },
}
local opts = cli:parse_or_exit(arg)

local id, seg -- what has to be cleaned up, once we have it

local function main()
  local key, err = shm.ftok(opts.path, opts.proj)
  if not key then
    error(("cannot make a key from %s: %s"):format(opts.path, err), 0)
  end
  local errno
  id, err, errno = shm.create(key, SIZE) -- exclusive: never share a key
  if not id then
    if errno == shm.EEXIST then
      local other = shm.open(key)
      error(("a segment with key 0x%08x already exists (id %s): another writer?"
             .. " If not, remove it with: ipcrm -m %s")
            :format(key & 0xffffffff, other, other), 0)
    end
    error(err, 0)
  end
  seg = assert(shm.attach(id))
  io.stderr:write(("%s: segment id %d, key 0x%08x, %d bytes\n")
                  :format(PROG, id, key & 0xffffffff, SIZE))

  local len = 0 -- the string's length: 'A's in 0..len-1, the NUL at len
  local n = 0
  while n ~= opts.count do -- forever when there is no --count
    if n > 0 then
      -- Only a signal with a handler cuts the sleep short; under lua5.4
      -- that is Ctrl-C, and Lua raises "interrupted!" as soon as it returns.
      shm.sleep(opts.interval)
    end
    if len == SIZE - 1 then
      len = 0 -- full: start over with a single 'A'
    end
    -- The new NUL first, then the 'A' over the old NUL, so that a reader
    -- never finds the string unterminated.
    seg:setbyte(len + 1, 0)
    seg:setbyte(len, "A")
    len = len + 1
    n = n + 1
  end
end

local ok, err = pcall(main)

-- Clean up whatever happened: detach, then remove the segment (readers
-- still attached keep it until they detach, and see it marked removed).
if seg then
  seg:detach()
end
local removed = true
if id then
  local rmerr
  removed, rmerr = shm.remove(id)
  if not removed then
    io.stderr:write(PROG, ": could not remove segment ", id, ": ", rmerr, "\n")
  end
end

if not ok and tostring(err):find("interrupted!", 1, true) then
  io.stderr:write(PROG, ": interrupted", id and removed and ", segment removed" or "", "\n")
  os.exit(130)
elseif not ok then
  io.stderr:write(PROG, ": ", tostring(err), "\n")
  os.exit(1)
elseif not removed then
  os.exit(1)
end
io.stderr:write(PROG, ": done, segment removed\n")
