--[[ reader.lua: the seed's client.cpp in Lua.

    lua5.4 lua/demo/reader.lua [--path P] [--proj N] [--interval S]

Opens the segment that writer.lua created with the key ftok(P, N), attaches
it read-only and prints the C string it holds every S seconds, one per line.
Standard output carries only those strings; messages go to standard error.

The reader stops once the writer has removed the segment, after printing the
string one last time. While the reader is attached, a removed segment lives
on, marked for removal (`removed` in shm.stat), until the last process
detaches; where IPC_STAT fails on such a segment (EIDRM or EINVAL), that
counts as removed too. Watching the id, not the key, matters: after removal
the key no longer finds the segment, and a new writer gets a new segment.

Exit status: 0 once the writer removed the segment, 1 when there is no
segment (no writer) or on an error, 2 on a bad command line, 130 after Ctrl-C.
]]

-- Run from a checkout after `make`, find the modules there; installed, or
-- with LUA_PATH_5_4/LUA_CPATH_5_4 set, the usual search paths still apply
-- (prelude.lua only adds to them).
dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")

local shm = require "sysvshm"
local options = require "sysvshm.options"

local PROG = "reader.lua"

local cli = options.new {
  prog = PROG,
  description = "Print the string in writer.lua's shared memory segment every interval,"
    .. "\nuntil the writer removes the segment.",
  { "path", default = "/tmp", metavar = "P", help = "existing file for ftok" },
  { "proj", type = "integer", default = 0x66, default_text = "0x66", min = 1, max = 255,
    metavar = "N", help = "ftok project id, 1..255" },
  { "interval", type = "number", default = 1, min = 0, metavar = "S",
    help = "seconds between prints" },
}
local opts = cli:parse_or_exit(arg)

local function fail(message)
  io.stderr:write(PROG, ": ", message, "\n")
  os.exit(1)
end

local key, err = shm.ftok(opts.path, opts.proj)
if not key then
  fail(("cannot make a key from %s: %s"):format(opts.path, err))
end

local id, errno
id, err, errno = shm.open(key)
if not id then
  if errno == shm.ENOENT then
    cli:error(("no segment for ftok(%s, 0x%02x): start writer.lua first")
              :format(opts.path, opts.proj), 1)
  end
  fail(err)
end

local seg
seg, err = shm.attach(id, { readonly = true })
if not seg then
  fail(err)
end

-- Has the writer removed the segment?
local function removed()
  local st, staterr, e = shm.stat(id)
  if st then
    return st.removed
  end
  if e == shm.EIDRM or e == shm.EINVAL then
    return true
  end
  error(staterr, 0)
end

local ok
ok, err = pcall(function()
  repeat
    -- Look before printing, so that the last line is the writer's last string.
    local gone = removed()
    io.stdout:write(seg:cstring(0), "\n")
    io.stdout:flush() -- one line at a time, even into a pipe
    if not gone then
      shm.sleep(opts.interval) -- may return early on a signal: that is fine
    end
  until gone
end)
seg:detach() -- the last detach destroys a removed segment

if ok then
  io.stderr:write(PROG, ": the writer removed the segment\n")
elseif tostring(err):find("interrupted!", 1, true) then
  os.exit(130) -- Ctrl-C: quietly, like most commands
else
  fail(tostring(err))
end
