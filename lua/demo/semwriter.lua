--[[ semwriter.lua: the seed's server/client protocol, guarded by a System V
semaphore, so that several writers (in Lua, in C) can append to one string.

    lua5.4 lua/demo/semwriter.lua --setup   [--path P] [--proj N]
    lua5.4 lua/demo/semwriter.lua --write T [--count N] [--path P] [--proj N]
    lua5.4 lua/demo/semwriter.lua --hold    [--path P] [--proj N]
    lua5.4 lua/demo/semwriter.lua --check T=N,... [--path P] [--proj N]
    lua5.4 lua/demo/semwriter.lua --teardown [--path P] [--proj N]

The key is ftok(P, N), as in the seed, and names two objects: a 64 KiB
segment holding a C string (the seed's layout: bytes, then a NUL), and a
set of one semaphore, 1 while nobody is appending. To append, a writer
takes the semaphore (semop -1 with SEM_UNDO), writes its record at the end
of the string and a NUL after it, and gives the semaphore back (+1, with
SEM_UNDO). A record is the writer's tag (one letter), a six-digit sequence
number and a newline, "L000042\n"; it is written byte by byte, the new NUL
last, so two writers appending at once would overwrite each other's records
or cut them: the semaphore is what keeps every record whole.
spec/fixtures/semwriter.c is the same writer in C; the two take part in one
protocol.

--setup creates both (the semaphore at 1) and prints their ids; --write T
appends N records tagged T; --hold takes the semaphore, says "holding" and
sleeps until it is killed (the kernel's undo gives the semaphore back when
it dies: nobody waits for ever); --check reads the string under the
semaphore and checks that tag T has exactly records 1..N, in order, and
that every record is whole; --teardown removes both.

Exit status: 0 when done (or the check passed), 1 on an error or a failed
check, 2 on a bad command line.
]]
dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")

local shm = require "sysvshm"
local sem = require "sysvshm.sem"
local options = require "sysvshm.options"

local SIZE = 65536
local PROG = "semwriter.lua"
local RECORD = 8 -- "L000042\n"

local cli = options.new {
  prog = PROG,
  description = "Append to the seed's shared string from several processes, under a System V semaphore.",
  { "path", default = "/tmp", metavar = "P", help = "existing file for ftok" },
  { "proj", type = "integer", default = 0x66, default_text = "0x66", min = 1, max = 255,
    metavar = "N", help = "ftok project id, 1..255" },
  { "setup", type = "flag", help = "create the segment and the semaphore" },
  { "write", metavar = "T", help = "append records tagged T (one letter)" },
  { "count", type = "integer", default = 1000, min = 0, metavar = "N", help = "records to append" },
  { "hold", type = "flag", help = "take the semaphore and sleep until killed" },
  { "check", metavar = "T=N,...", help = "check that each tag T has records 1..N, whole" },
  { "teardown", type = "flag", help = "remove the segment and the semaphore" },
}
local opts = cli:parse_or_exit(arg)

local function die(fmt, ...)
  io.stderr:write(PROG, ": ", fmt:format(...), "\n")
  os.exit(1)
end

local key = shm.ftok(opts.path, opts.proj) or die("cannot make a key from %s", opts.path)

if opts.setup then
  local id, err = shm.create(key, SIZE, { mode = 420 }) -- 0644, as the seed
  if not id then die("shm.create: %s", err) end
  local s, serr = sem.create(key, 1, { value = 1, mode = 420 })
  if not s then
    shm.remove(id)
    die("sem.create: %s", serr)
  end
  print(("segment %d semaphore %d"):format(id, s.id))
  return
end

local id, err = shm.open(key)
if not id then die("no segment for key 0x%08x: %s", key & 0xffffffff, err) end
local s, serr = sem.open(key)
if not s then die("no semaphore set for key 0x%08x: %s", key & 0xffffffff, serr) end

if opts.teardown then
  local ok1, e1 = shm.remove(id)
  local ok2, e2 = s:remove()
  if not (ok1 and ok2) then die("%s", e1 or e2) end
  return
end

local seg <close> = assert(shm.attach(id))

-- The length of the C string (the seed's strlen), bounded by the segment.
local function strlen()
  local n = #seg:cstring(0)
  if n == SIZE then die("the string has no NUL: not the seed's layout") end
  return n
end

local function append(tag, seq)
  local len = strlen()
  local rec = ("%s%06d\n"):format(tag, seq)
  if len + #rec >= SIZE then die("the segment is full") end
  for i = 1, #rec do -- byte by byte, as a careless writer would
    seg:write(len + i - 1, rec:sub(i, i))
  end
  seg:write(len + #rec, "\0")
end

if opts.write then
  if not opts.write:match("^%a$") then cli:error("--write takes one letter") end
  for seq = 1, opts.count do
    s:with(0, append, opts.write, seq)
  end
  print(("%s wrote %d records"):format(opts.write, opts.count))
  return
end

if opts.hold then
  io.stdout:setvbuf("line")
  assert(s:acquire(0))
  print("holding")
  while true do shm.sleep(60) end
end

if opts.check then
  local want = {}
  for tag, n in opts.check:gmatch("(%a)=(%d+)") do want[tag] = math.tointeger(tonumber(n)) end
  local text = s:with(0, function() return seg:cstring(0) end)
  local seen, bad = {}, 0
  for i = 1, #text, RECORD do
    local rec = text:sub(i, i + RECORD - 1)
    local tag, seq = rec:match("^(%a)(%d%d%d%d%d%d)\n$")
    seq = math.tointeger(tonumber(seq))
    if not tag or seq ~= (seen[tag] or 0) + 1 then
      bad = bad + 1
      if bad <= 5 then print(("bad record at byte %d: %q"):format(i - 1, rec)) end
    end
    if tag then seen[tag] = seq end
  end
  local ok = bad == 0
  for tag, n in pairs(want) do
    print(("%s: %d records (want %d)"):format(tag, seen[tag] or 0, n))
    ok = ok and seen[tag] == n
  end
  for tag in pairs(seen) do
    if not want[tag] then print(("%s: unexpected tag"):format(tag)); ok = false end
  end
  print(ok and "ok" or "FAILED")
  os.exit(ok and 0 or 1)
end

cli:error("give --setup, --write T, --hold, --check T=N,... or --teardown")
