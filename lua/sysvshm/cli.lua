--- The `sysvshm` command: find, inspect and clean up System V shared memory
-- segments from the shell, field by field.
--
--     sysvshm ls [--mine] [--json] [--shm|--sem]  segments and semaphore sets (ipcs)
--     sysvshm stat [--sem] ID | --key K [--json]  every field of one segment or set
--     sysvshm dump ID [--offset N] [--length N] hex and ASCII, like xxd
--     sysvshm dump ID --layout FILE [--struct NAME] [--offset N]
--     sysvshm dump ID --cdef FILE.h [--struct NAME] [--offset N]
--                                               one line per field
--     sysvshm watch ID --layout FILE|--cdef FILE.h [--struct NAME] [--interval S] [--frames N]
--                                               the field view, redrawn
--     sysvshm dict ID [--offset N] [--full] [--json]
--                                               the entries of a sysvshm.dict
--     sysvshm rm [--sem] ID... | --key K | --mine-unattached [--dry-run]
--     sysvshm new --size N [--key K] [--mode 0600]   create; prints the id
--
-- Every command takes `--help`; `sysvshm help COMMAND` says the same. From a
-- checkout (after `make`) run it as `lua5.4 lua/sysvshm/cli.lua ...`: it
-- then finds the in-tree modules. Installed by the rockspec it is the
-- `sysvshm` script.
--
-- **Exit status.** 0 when done; 1 when it could not be done: the system
-- refused (the message names the call, as `shmctl: Invalid argument`), the
-- segment does not exist or is too small, a layout file is broken, the
-- output cannot be written (a full disk, `> /dev/full`; `new` then removes
-- the segment it created, whose id would be lost); 2 for a
-- bad command line (the message and the usage go to standard error). A bug
-- gives status 70 and a one-line message; set `SYSVSHM_DEBUG=1` in the
-- environment for the traceback. Ctrl-C ends `watch` with status 0 and any
-- other command with 130.
--
-- **Layout files.** `dump --layout` and `watch --layout` read a Lua file
-- that returns either one layout made with `sysvshm.layout.struct`, or a
-- table of named layouts, of which `--struct NAME` picks one (needed when
-- there is more than one):
--
--     -- record_layout.lua
--     local layout = require "sysvshm.layout"
--     local point = layout.struct({ {"x", "d"}, {"y", "d"} }, "point")
--     local record = layout.struct({
--       {"magic", "I4"}, {"count", "i8"}, {"name", "c16"},
--       {"samples", "d", 8}, {"origin", point},
--     }, "record")
--     return { record = record, point = point }
--
-- The file is an ordinary Lua chunk run with the usual globals, so it may
-- `require` shared definitions. The struct starts at `--offset` (default 0,
-- a multiple of its alignment). Each field is one line: its offset in the
-- segment, its C type, its name and its value; nested structs and arrays of
-- structs are shown member by member (`origin.x`, `pts[2].y`), arrays of
-- numbers on one line with runs of equal values folded (`0 (x15)`) and,
-- unless `--full` is given, cut after 16 items; text fields (`cN`) are
-- quoted, non-printable bytes as `\xNN`. `lua/demo/record_layout.lua` is a
-- complete example.
--
-- **C headers.** Instead of a layout file, `--cdef FILE.h` reads the
-- struct from the C header the writer compiles (`sysvshm.layout.cdef`:
-- `struct` and `typedef struct` declarations; prototypes, enums and most
-- preprocessor lines are skipped). `--struct NAME` names the struct (a tag
-- or a typedef name), needed when the header declares several that no
-- other struct contains. A construct it cannot share (a pointer, a
-- bit-field, a union member...) fails with its line number.
--
-- The segment is attached read-only by `dump` and `watch`, and a snapshot
-- is not atomic: a process writing while it is read may show half-updated
-- records (guard them with a mutex if that matters).
-- @module sysvshm.cli

local shm = require "sysvshm"
local sem = require "sysvshm.sem"
local layout = require "sysvshm.layout"
local options = require "sysvshm.options"

local M = {}

local PROG = "sysvshm"
local INT_MAX = 0x7fffffff
local KEY_MIN, KEY_MAX = -0x80000000, 0xffffffff

local sformat, concat = string.format, table.concat

-- ---- failures ----------------------------------------------------------------

-- Commands raise these tables; `main` turns them into a message and a status.
-- A usage error (status 2) shows the usage of `parser` too.
local Failure = {}

local function fail(fmt, ...)
  error(setmetatable({ status = 1, message = sformat(fmt, ...) }, Failure), 0)
end

local function usage_error(parser, fmt, ...)
  error(setmetatable({ status = 2, message = sformat(fmt, ...), parser = parser }, Failure), 0)
end

-- ---- standard output ---------------------------------------------------------------

-- Everything goes to standard output through `emit`, and every command's
-- output is flushed before it counts as done (`flush_out`, and `main` once
-- more at the end): output that cannot be written (a full disk, /dev/full,
-- a closed descriptor) is a failure, status 1, never a silent success.
local function emit(...)
  local ok, err = io.stdout:write(...)
  if not ok then
    fail("cannot write the output: %s", tostring(err))
  end
end

local function flush_out()
  local ok, err = io.stdout:flush()
  if not ok then
    fail("cannot write the output: %s", tostring(err))
  end
end

-- ---- small formatting helpers ----------------------------------------------------

local JSON_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                       ["\t"] = "\\t", ["\b"] = "\\b", ["\f"] = "\\f" }

--- Encode a value as JSON (one line). Non-empty tables whose keys are
-- exactly 1..#t become arrays, other tables objects with their keys
-- sorted, unless `order` lists the keys to write (in that order; missing
-- ones are left out). Integers are written exactly, floats with 17
-- significant digits, NaN and infinities as `null`; strings are escaped as
-- RFC 8259 requires (bytes >= 0x80 are copied, so pass UTF-8).
-- @param v nil, a boolean, a number, a string or a table of those
-- @tparam[opt] {string,...} order the key order of the outermost object
-- @treturn string
function M.json(v, order)
  local t = type(v)
  if v == nil then
    return "null"
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "number" then
    if math.type(v) == "integer" then
      return sformat("%d", v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      return "null"
    end
    return sformat("%.17g", v)
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return JSON_ESCAPES[c] or sformat("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    local n, count = #v, 0
    for _ in pairs(v) do
      count = count + 1
    end
    if not order and count == n and (n > 0 or next(v) == nil and getmetatable(v) == M.json_array) then
      local parts = {}
      for i = 1, n do
        parts[i] = M.json(v[i])
      end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = order
    if not keys then
      keys = {}
      for k in pairs(v) do
        keys[#keys + 1] = tostring(k)
      end
      table.sort(keys)
    end
    local parts = {}
    for _, k in ipairs(keys) do
      local x = v[k]
      if x ~= nil then
        parts[#parts + 1] = M.json(tostring(k)) .. ":" .. M.json(x)
      end
    end
    return "{" .. concat(parts, ",") .. "}"
  end
  error(sformat("cannot encode a %s as JSON", t), 2)
end

--- A metatable marking an empty table as a JSON array (`[]` instead of `{}`).
M.json_array = {}

--- A size in bytes for people: `512B`, `4.0K`, `64K`, `1.5M`, `2.0G` (powers
-- of 1024, one decimal below 10).
-- @tparam integer n bytes
-- @treturn string
function M.human_size(n)
  if n < 1024 then
    return n .. "B"
  end
  local units = { "K", "M", "G", "T", "P", "E" }
  local v, i = n / 1024, 1
  while true do
    local text = v < 9.95 and sformat("%.1f", v) or sformat("%.0f", v)
    if tonumber(text) < 1024 or i == #units then
      return text .. units[i]
    end
    v, i = v / 1024, i + 1
  end
end

--- Permission bits as `ls -l` shows them.
-- For example 0644 gives `rw-r--r--`.
-- @tparam integer mode
-- @treturn string nine characters
function M.mode_string(mode)
  local out = {}
  for shift = 8, 0, -1 do
    out[#out + 1] = mode & (1 << shift) ~= 0 and ("rwx"):sub(3 - shift % 3, 3 - shift % 3) or "-"
  end
  return concat(out)
end

-- A key as ipcs shows it: 0x%08x of the unsigned 32-bit value.
local function key_string(key)
  return sformat("0x%08x", key & 0xffffffff)
end

local function time_string(t)
  if t == 0 then
    return "never"
  end
  return os.date("%Y-%m-%d %H:%M:%S", t)
end

-- An integer, unsigned when `unsigned` (a uint64 above math.maxinteger
-- reads back negative, as string.unpack gives it).
local function int_string(v, unsigned)
  if unsigned and v < 0 then
    local q = (v >> 1) // 5 -- v as unsigned, divided by 10
    return sformat("%d%d", q, v - q * 10)
  end
  return sformat("%d", v)
end

local QUOTE_ESCAPES = setmetatable({ ['"'] = '\\"', ["\\"] = "\\\\" }, {
  __index = function(t, c)
    local e = sformat("\\x%02x", c:byte())
    t[c] = e
    return e
  end,
})

-- Bytes shown between double quotes, non-printable ones as \xNN.
local function quote_bytes(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', QUOTE_ESCAPES) .. '"'
end

-- ---- users and groups -----------------------------------------------------------

-- id -> name from a passwd-like file (/etc/passwd, /etc/group); empty when
-- the file cannot be read. Only local files: names from NSS services (LDAP,
-- ...) are not looked up, and their ids are shown as numbers.
local function read_names(path)
  local names = {}
  local f = io.open(path, "r")
  if f then
    for line in f:lines() do
      local name, id = line:match("^([^:#][^:]*):[^:]*:(%d+):")
      id = id and math.tointeger(tonumber(id))
      if id and names[id] == nil then
        names[id] = name
      end
    end
    f:close()
  end
  return names
end

local users, groups

local function user_name(uid)
  users = users or read_names("/etc/passwd")
  return users[uid] or tostring(uid)
end

local function group_name(gid)
  groups = groups or read_names("/etc/group")
  return groups[gid] or tostring(gid)
end

-- The effective uid of this process (from /proc: plain Lua has no getuid).
local function euid()
  local f = io.open("/proc/self/status", "r")
  if not f then
    fail("cannot read /proc/self/status to find the user id")
  end
  local s = f:read("a")
  f:close()
  local id = s:match("\nUid:%s+%d+%s+(%d+)")
  if not id then
    fail("no Uid line in /proc/self/status")
  end
  return math.tointeger(tonumber(id))
end

local function mine(st, uid)
  return st.uid == uid or st.cuid == uid
end

-- ---- arguments ----------------------------------------------------------------------

-- A segment id from a positional argument, or a usage error.
local function parse_id(parser, s)
  local v = s:match("^%d+$") and math.tointeger(tonumber(s))
  if not v or v > INT_MAX then
    usage_error(parser, "'%s' is not a segment id (an integer 0..%d)", s, INT_MAX)
  end
  return v
end

local function check_key(v)
  if v < KEY_MIN or v > KEY_MAX then
    return nil, "must be a 32-bit key (-0x80000000..0xffffffff)"
  end
  return true
end

local KEY_OPTION = { "key", short = "k", type = "integer", metavar = "K", check = check_key,
                     help = "the segment's key, decimal or 0x hex" }

-- Parse args with parser: the options, or a usage error; on --help print
-- the usage and return nil (the command then returns status 0).
local function parse(parser, args)
  local opts, err = parser:parse(args)
  if not opts then
    usage_error(parser, "%s", err)
  end
  if opts.help then
    emit(parser:usage())
    return nil
  end
  return opts
end

-- The message of a failed call on segment id, with a hint for the errno
-- values that mean "no such segment".
local function about(id, msg, errno)
  if errno == shm.EINVAL or errno == shm.EIDRM then
    return sformat("no segment with id %d (%s)", id, msg)
  end
  return sformat("segment %d: %s", id, msg)
end

local function stat_or_fail(id)
  local st, msg, errno = shm.stat(id)
  if not st then
    fail("%s", about(id, msg, errno))
  end
  return st
end

local function open_key_or_fail(key)
  local id, msg, errno = shm.open(key)
  if not id then
    if errno == shm.ENOENT then
      fail("no segment with key %s (%s)", key_string(key), msg)
    end
    fail("key %s: %s", key_string(key), msg)
  end
  return id
end

local function attach_ro(id)
  local seg, msg, errno = shm.attach(id, { readonly = true })
  if not seg then
    fail("%s", about(id, msg, errno))
  end
  return seg
end

local function list_or_fail()
  local list, msg = shm.list()
  if not list then
    fail("cannot list the segments: %s", msg)
  end
  return list
end

-- The same for semaphore sets (their ids are a namespace of their own).
local function sem_about(id, msg, errno)
  if errno == shm.EINVAL or errno == shm.EIDRM then
    return sformat("no semaphore set with id %d (%s)", id, msg)
  end
  return sformat("semaphore set %d: %s", id, msg)
end

local function sem_stat_or_fail(id)
  local st, msg, errno = sem.semctl(id, 0, sem.IPC_STAT)
  if not st then
    fail("%s", sem_about(id, msg, errno))
  end
  return st
end

local function sem_open_key_or_fail(key)
  local id, msg, errno = sem.semget(key, 0, 0)
  if not id then
    if errno == shm.ENOENT then
      fail("no semaphore set with key %s (%s)", key_string(key), msg)
    end
    fail("key %s: %s", key_string(key), msg)
  end
  return id
end

local function sem_list_or_fail()
  local list, msg = sem.list()
  if not list then
    fail("cannot list the semaphore sets: %s", msg)
  end
  return list
end

local SEM_OPTION = { "sem", type = "flag", help = "semaphore sets, not segments (ids and keys of sets)" }

-- ---- the stat fields ------------------------------------------------------------------

--- The fields of a segment, in the order of the JSON output.
-- That is, of `ls --json` and `stat --json`: `id`, then those of `shm.stat`.
M.FIELDS = { "id", "key", "size", "mode", "uid", "gid", "cuid", "cgid", "cpid", "lpid",
             "nattch", "atime", "dtime", "ctime", "removed", "locked", "holds", "holds_version" }

--- The fields of a semaphore set's JSON line (`ls --json`, `stat --sem
-- --json`): `type` ("sem"), `id`, then those of `semset:stat`.
M.SEM_FIELDS = { "type", "id", "key", "nsems", "mode", "uid", "gid", "cuid", "cgid", "otime", "ctime" }

local function status_string(st)
  local s = {}
  if st.removed then
    s[#s + 1] = "removed"
  end
  if st.locked then
    s[#s + 1] = "locked"
  end
  return #s > 0 and concat(s, ",") or "-"
end

-- ---- commands -------------------------------------------------------------------------

local commands, order = {}, {}

local function command(name, def, run)
  local summary = def.summary -- the CLI's own field, not one of options.new's
  def.summary = nil
  def.prog = PROG .. " " .. name
  commands[name] = { parser = options.new(def), run = run, summary = summary }
  order[#order + 1] = name
end

-- Rows of cells as a table with aligned columns (right-aligned where
-- `right[i]`), trailing blanks trimmed.
local function print_table(rows, right)
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  local out = {}
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
      local pad = (" "):rep(widths[i] - #cell)
      cells[i] = right[i] and pad .. cell or cell .. pad
    end
    out[#out + 1] = (concat(cells, "  "):gsub("%s+$", ""))
  end
  emit(concat(out, "\n"), "\n")
end

command("ls", {
  summary = "list segments and semaphore sets (like ipcs -m -s)",
  description = "List the shared memory segments this user can see: key, id, owner,\n"
    .. "permissions, size, attachments, creator and last pids, status (removed:\n"
    .. "marked for removal, it goes when the last process detaches); then, after\n"
    .. "a blank line, the semaphore sets: key, id, owner, permissions, number of\n"
    .. "semaphores, last operation and last change. --shm and --sem show one\n"
    .. "table only (as ipcs -m and ipcs -s).",
  epilog = "With --json, one JSON object per line and segment, with the fields of\n"
    .. "shm.stat and the id (times in seconds since the epoch, mode as an integer),\n"
    .. "then one per semaphore set, with \"type\":\"sem\", the id and the fields of\n"
    .. "semset:stat.",
  { "mine", short = "m", type = "flag", help = "only the segments and sets this user owns or created" },
  { "json", short = "j", type = "flag", help = "JSON lines instead of a table" },
  { "shm", type = "flag", help = "only the segments" },
  { "sem", type = "flag", help = "only the semaphore sets" },
}, function(opts, parser)
  if opts.shm and opts.sem then
    usage_error(parser, "give --shm or --sem, not both")
  end
  local function only_mine(list)
    if not opts.mine then
      return list
    end
    local uid, kept = euid(), {}
    for _, st in ipairs(list) do
      if mine(st, uid) then
        kept[#kept + 1] = st
      end
    end
    return kept
  end
  local list = not opts.sem and only_mine(list_or_fail()) or {}
  local sets = not opts.shm and only_mine(sem_list_or_fail()) or {}
  if opts.json then
    local out = {}
    for _, st in ipairs(list) do
      out[#out + 1] = M.json(st, M.FIELDS)
    end
    for _, st in ipairs(sets) do
      st.type = "sem"
      out[#out + 1] = M.json(st, M.SEM_FIELDS)
    end
    if #out > 0 then
      emit(concat(out, "\n"), "\n")
    end
    return 0
  end
  if not opts.sem then
    local rows = { { "KEY", "ID", "OWNER", "MODE", "SIZE", "NATTCH", "CPID", "LPID", "STATUS" } }
    for _, st in ipairs(list) do
      rows[#rows + 1] = {
        key_string(st.key), tostring(st.id), user_name(st.uid), M.mode_string(st.mode),
        M.human_size(st.size), tostring(st.nattch), tostring(st.cpid), tostring(st.lpid),
        status_string(st),
      }
    end
    print_table(rows, { false, true, false, false, true, true, true, true, false })
  end
  if not opts.shm then
    if not opts.sem then
      emit("\n")
    end
    local rows = { { "KEY", "SEMID", "OWNER", "MODE", "NSEMS", "OTIME", "CTIME" } }
    for _, st in ipairs(sets) do
      rows[#rows + 1] = {
        key_string(st.key), tostring(st.id), user_name(st.uid), M.mode_string(st.mode),
        tostring(st.nsems), st.otime == 0 and "never" or time_string(st.otime), time_string(st.ctime),
      }
    end
    print_table(rows, { false, true, false, false, true, false, false })
  end
  return 0
end)

-- ---- what a segment holds ---------------------------------------------------------

-- What the first bytes of a region say it holds (sysvshm.dict's "SVDI",
-- sysvshm.channel's "SVCH", native u32 magic then u32 layout version).
local MAGICS = { [0x49445653] = "dict", [0x48435653] = "channel" }

local function holds(seg, off)
  if #seg < 8 or off > #seg - 8 then
    return nil
  end
  local magic, version = seg:unpack("=I4 I4", off)
  local what = MAGICS[magic]
  return what, what and version
end

-- `stat --sem`: every field of a semaphore set, and each semaphore's value,
-- last pid and waiters.
local function stat_sem(opts, parser)
  local id = opts[1] and parse_id(parser, opts[1]) or sem_open_key_or_fail(opts.key)
  local st = sem_stat_or_fail(id)
  st.id, st.type = id, "sem"
  local values, msg, errno = sem.semctl(id, 0, sem.GETALL)
  if not values then
    fail("%s", sem_about(id, msg, errno))
  end
  if opts.json then
    local fields = { table.unpack(M.SEM_FIELDS) }
    fields[#fields + 1] = "values"
    st.values = setmetatable(values, M.json_array)
    emit(M.json(st, fields), "\n")
    return 0
  end
  local function who(v, name)
    return name == tostring(v) and tostring(v) or sformat("%d (%s)", v, name)
  end
  local rows = {
    { "id", tostring(id) },
    { "key", key_string(st.key) .. (st.key == shm.IPC_PRIVATE and " (IPC_PRIVATE)" or "") },
    { "nsems", tostring(st.nsems) },
    { "mode", sformat("0%03o (%s)", st.mode, M.mode_string(st.mode)) },
    { "uid", who(st.uid, user_name(st.uid)) },
    { "gid", who(st.gid, group_name(st.gid)) },
    { "cuid", who(st.cuid, user_name(st.cuid)) },
    { "cgid", who(st.cgid, group_name(st.cgid)) },
    { "otime", sformat("%d (%s)", st.otime, time_string(st.otime)) },
    { "ctime", sformat("%d (%s)", st.ctime, time_string(st.ctime)) },
  }
  print_table(rows, {})
  rows = { { "SEMNUM", "VALUE", "PID", "NCNT", "ZCNT" } }
  for i, v in ipairs(values) do
    local pid = sem.semctl(id, i - 1, sem.GETPID)
    local ncnt = sem.semctl(id, i - 1, sem.GETNCNT)
    local zcnt = sem.semctl(id, i - 1, sem.GETZCNT)
    rows[#rows + 1] = { tostring(i - 1), tostring(v), tostring(pid or "?"), tostring(ncnt or "?"),
                        tostring(zcnt or "?") }
  end
  emit("\n")
  print_table(rows, { true, true, true, true, true })
  return 0
end

command("stat", {
  summary = "show every field of one segment or semaphore set",
  args = "[ID]",
  max_args = 1,
  description = "Show every field of the segment with id ID (or with key K): the\n"
    .. "numbers of shm.stat, with names, sizes, permissions and times readable;\n"
    .. "and what it holds when its first bytes say so: a sysvshm.dict or a\n"
    .. "sysvshm.channel at offset 0 (field holds, and holds_version: its layout).\n"
    .. "With --sem, of the semaphore set with that id or key, and then each\n"
    .. "semaphore's value, last pid and waiters (for an increase, for zero).",
  epilog = "To look at the first bytes the segment is attached read-only for a\n"
    .. "moment, after the numbers are read (so they show the segment as it was;\n"
    .. "its atime, dtime and lpid change: --no-peek leaves them alone). Without\n"
    .. "read permission, no holds.",
  KEY_OPTION,
  { "no-peek", short = "n", type = "flag", help = "only the numbers: do not attach to see what it holds" },
  SEM_OPTION,
  { "json", short = "j", type = "flag", help = "one JSON object, as a line of ls --json" },
}, function(opts, parser)
  if (opts[1] ~= nil) == (opts.key ~= nil) then
    usage_error(parser, opts[1] and "give a segment id or --key, not both" or "give a segment id or --key")
  end
  if opts.sem then
    return stat_sem(opts, parser)
  end
  local id = opts[1] and parse_id(parser, opts[1]) or open_key_or_fail(opts.key)
  local st = stat_or_fail(id)
  st.id = id
  -- Then a look at the first bytes (the numbers above are from before this
  -- attachment; without read permission there is no look).
  local seg <close> = not opts.no_peek and shm.attach(id, { readonly = true }) or nil
  if seg then
    st.holds, st.holds_version = holds(seg, 0)
    seg:detach()
  end
  if opts.json then
    emit(M.json(st, M.FIELDS), "\n")
    return 0
  end
  local function who(v, name)
    return name == tostring(v) and tostring(v) or sformat("%d (%s)", v, name)
  end
  local rows = {
    { "id", tostring(id) },
    { "key", key_string(st.key) .. (st.key == shm.IPC_PRIVATE and " (IPC_PRIVATE)" or "") },
    { "size", sformat("%d (%s)", st.size, M.human_size(st.size)) },
    { "mode", sformat("0%03o (%s)", st.mode, M.mode_string(st.mode)) },
    { "uid", who(st.uid, user_name(st.uid)) },
    { "gid", who(st.gid, group_name(st.gid)) },
    { "cuid", who(st.cuid, user_name(st.cuid)) },
    { "cgid", who(st.cgid, group_name(st.cgid)) },
    { "cpid", tostring(st.cpid) },
    { "lpid", tostring(st.lpid) },
    { "nattch", tostring(st.nattch) },
    { "atime", sformat("%d (%s)", st.atime, time_string(st.atime)) },
    { "dtime", sformat("%d (%s)", st.dtime, time_string(st.dtime)) },
    { "ctime", sformat("%d (%s)", st.ctime, time_string(st.ctime)) },
    { "removed", tostring(st.removed) },
    { "locked", tostring(st.locked) },
  }
  if st.holds then
    rows[#rows + 1] = { "holds", sformat("a sysvshm.%s at offset 0 (layout version %d)%s", st.holds,
                                         st.holds_version, st.holds == "dict"
                                         and sformat(": sysvshm dict %d", id) or "") }
  end
  print_table(rows, {})
  return 0
end)

-- ---- layouts --------------------------------------------------------------------------

-- The layout that a layout file gives, chosen by `struct`; fails with a
-- message saying what is wrong with the file.
local function load_layout(path, struct)
  local chunk, err = loadfile(path, "t")
  if not chunk then
    fail("cannot load the layout file: %s", err)
  end
  local ok, res = pcall(chunk)
  if not ok then
    fail("layout file %s failed: %s", path, tostring(res))
  end
  if layout.is(res) then
    if struct and struct ~= res.name then
      fail("layout file %s returns struct %s, not %s", path, res.name or "{...} (unnamed)", struct)
    end
    return res
  end
  if type(res) ~= "table" then
    fail("layout file %s must return a layout or a table of named layouts, not a %s", path, type(res))
  end
  local names = {}
  for k, v in pairs(res) do
    if type(k) == "string" and layout.is(v) then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  if #names == 0 then
    fail("layout file %s returns a table without any layout in it", path)
  end
  if struct then
    if not layout.is(res[struct]) then
      fail("layout file %s has no struct '%s' (it has: %s)", path, struct, concat(names, ", "))
    end
    return res[struct]
  end
  if #names > 1 then
    fail("layout file %s has several structs, choose one with --struct (%s)", path, concat(names, ", "))
  end
  return res[names[1]]
end

-- The layout of struct `struct` (or of the one root struct) declared in
-- the C header at path (layout.cdef); fails with the reader's message.
local function load_cdef(path, struct)
  local f, err = io.open(path, "r")
  if not f then
    fail("cannot read the header: %s", err)
  end
  local text = f:read("a")
  f:close()
  local ok, res = pcall(layout.cdef, text, struct)
  if not ok then
    fail("header %s: %s", path, tostring(res))
  end
  return res
end

-- The layout that --layout FILE or --cdef FILE.h gives (--struct NAME).
local function options_layout(parser, opts, required)
  if opts.layout ~= nil and opts.cdef ~= nil then
    usage_error(parser, "--layout and --cdef do not go together (one describes the struct)")
  end
  if opts.layout == nil and opts.cdef == nil then
    if required then
      usage_error(parser, "%s", required)
    elseif opts.struct ~= nil then
      usage_error(parser, "--struct needs --layout or --cdef")
    end
    return nil
  end
  if opts.cdef ~= nil then
    return load_cdef(opts.cdef, opts.struct)
  end
  return load_layout(opts.layout, opts.struct)
end

-- Where a struct of layout L can be read at off in seg, or fail.
local function check_place(L, seg, id, off)
  local size = #seg
  if off % L.align ~= 0 then
    fail("offset %d is not a multiple of the struct's alignment (%d)", off, L.align)
  end
  if off > size or L.size > size - off then
    fail("struct %s of %d bytes at offset %d does not fit in segment %d (%d bytes)",
         L.name or "{...}", L.size, off, id, size)
  end
end

local MAX_ITEMS = 16 -- array items shown before "..." (without --full)

-- The text of one scalar or text item of field f.
local function item_string(f, v)
  if f.kind == "char" then
    return quote_bytes(v)
  elseif f.kind == "float" then
    return tostring(v)
  end
  return int_string(v, f.kind == "uint")
end

-- An array of items on one line: runs of 3 or more equal items folded as
-- "v (xN)"; after `max` runs the rest is counted, not shown. Returns the
-- text and the full text (to compare frames, whatever was cut).
local function array_string(f, t, max)
  local runs, i = {}, 1
  while i <= #t do
    local s = item_string(f, t[i])
    local j = i
    while j < #t and item_string(f, t[j + 1]) == s do
      j = j + 1
    end
    local n = j - i + 1
    if n >= 3 then
      runs[#runs + 1] = { sformat("%s (x%d)", s, n), n }
      i = j + 1
    else
      runs[#runs + 1] = { s, 1 }
      i = i + 1
    end
  end
  local shown, hidden = {}, 0
  local all = {}
  for k, g in ipairs(runs) do
    all[k] = g[1]
    if not max or k <= max then
      shown[#shown + 1] = g[1]
    else
      hidden = hidden + g[2]
    end
  end
  local full = "[" .. concat(all, ", ") .. "]"
  if hidden > 0 then
    return "[" .. concat(shown, ", ") .. sformat(", ... %d more]", hidden), full
  end
  return full, full
end

-- The C type of one element of f, with the text field's size.
local function ctype(f)
  if f.kind == "char" then
    return sformat("char[%d]", f.elemsize)
  elseif f.kind == "struct" then
    return f.ctype or "struct {...}"
  end
  return f.ctype
end

-- The lines of the field view of L read at absolute offset `base`:
-- {offset, ctype, name, shown value, full value}, nested structs (and
-- arrays of them) member by member.
local function field_lines(L, values, base, prefix, max, out)
  out = out or {}
  for _, f in ipairs(L.fields) do
    local name, off, v = prefix .. f.name, base + f.offset, values[f.name]
    if f.kind == "struct" then
      if f.count then
        for i = 1, f.count do
          field_lines(f.type, v[i], off + (i - 1) * f.elemsize, sformat("%s[%d].", name, i), max, out)
        end
      else
        field_lines(f.type, v, off, name .. ".", max, out)
      end
    elseif f.count then
      local shown, full = array_string(f, v, max)
      local t = ctype(f)
      t = f.kind == "char" and sformat("char[%d][%d]", f.count, f.elemsize) or sformat("%s[%d]", t, f.count)
      out[#out + 1] = { off, t, name, shown, full }
    else
      local s = item_string(f, v)
      out[#out + 1] = { off, ctype(f), name, s, s }
    end
  end
  return out
end

-- The field view as text lines: offset, type, field, value. With `marks`
-- (watch) a first column flags the changed lines with "*", in reverse
-- video too when `ansi`.
local function render_fields(lines, marks, ansi)
  local rows = { { "OFFSET", "TYPE", "FIELD", "VALUE" } }
  for _, l in ipairs(lines) do
    rows[#rows + 1] = { tostring(l[1]), l[2], l[3], l[4] }
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
      widths[i] = math.max(widths[i] or 0, #cell)
    end
  end
  local fmt = sformat("%%%ds  %%-%ds  %%-%ds  %%s", widths[1], widths[2], widths[3])
  local out = {}
  for r, row in ipairs(rows) do
    local text = sformat(fmt, table.unpack(row)):gsub("%s+$", "")
    if marks then
      local changed = marks[r - 1]
      text = (changed and "* " or "  ") .. text
      if changed and ansi then
        text = "\27[7m" .. text .. "\27[0m"
      end
    end
    out[#out + 1] = text
  end
  return out
end

local LAYOUT_OPTIONS = {
  { "layout", short = "l", metavar = "FILE", help = "a Lua file returning a layout (or a table of them)" },
  { "cdef", metavar = "FILE.h", help = "a C header declaring the struct (layout.cdef)" },
  { "struct", short = "s", metavar = "NAME", help = "which layout of the file (or struct of the header) to use" },
  { "full", type = "flag", help = "show arrays whole (default: the first 16 items)" },
}

local LAYOUT_EPILOG = "A layout file is a Lua file that returns a layout made with\n"
  .. "sysvshm.layout.struct, or a table of named layouts (pick one with --struct):\n"
  .. "\n"
  .. "    local layout = require \"sysvshm.layout\"\n"
  .. "    return layout.struct({ {\"magic\", \"I4\"}, {\"count\", \"i8\"},\n"
  .. "                           {\"name\", \"c16\"}, {\"samples\", \"d\", 8} }, \"record\")\n"
  .. "\n"
  .. "See lua/demo/record_layout.lua. Or give the C header the writer compiles,\n"
  .. "--cdef FILE.h (with --struct NAME when it declares several structs).\n"
  .. "The segment is attached read-only."

local function with_layout_options(def)
  for _, o in ipairs(LAYOUT_OPTIONS) do
    def[#def + 1] = o
  end
  return def
end

command("dump", with_layout_options({
  summary = "show the bytes (like xxd), or the fields of a layout",
  args = "ID",
  min_args = 1,
  max_args = 1,
  description = "Show the segment's bytes in hex and ASCII, like xxd (offsets from the\n"
    .. "segment start), or with --layout one line per field: offset, C type, name\n"
    .. "and value.",
  epilog = LAYOUT_EPILOG,
  { "offset", short = "o", type = "integer", min = 0, default = 0,
    help = "where to start; with --layout, where the struct starts" },
  { "length", short = "n", type = "integer", min = 0, help = "bytes to show (default: to the end)" },
}), function(opts, parser)
  local id = parse_id(parser, opts[1])
  if (opts.layout ~= nil or opts.cdef ~= nil) and opts.length ~= nil then
    usage_error(parser, "--length does not go with --layout (the struct has its own size)")
  end
  local L = options_layout(parser, opts)
  local seg <close> = attach_ro(id)
  local size, off = #seg, opts.offset

  if L then
    check_place(L, seg, id, off)
    local lines = field_lines(L, L:read(seg, off), off, "", not opts.full and MAX_ITEMS or nil)
    emit(concat(render_fields(lines), "\n"), "\n")
    return 0
  end

  if off > size then
    fail("offset %d is past the end of segment %d (%d bytes)", off, id, size)
  end
  local len = size - off
  if opts.length and opts.length < len then
    len = opts.length
  end
  local out, stop = {}, off + len
  for pos = off, stop - 1, 16 do
    local n = math.min(16, stop - pos)
    local bytes = seg:read(pos, n)
    local hex = ("%02x"):rep(n):format(bytes:byte(1, n))
    hex = hex:gsub("(%x%x%x%x)", "%1 "):gsub(" $", "")
    out[#out + 1] = sformat("%08x: %-39s  %s", pos, hex, (bytes:gsub("[^\32-\126]", ".")))
    if #out == 256 then
      emit(concat(out, "\n"), "\n")
      out = {}
    end
  end
  if #out > 0 then
    emit(concat(out, "\n"), "\n")
  end
  return 0
end)

-- Whether standard output is a terminal (plain Lua has no isatty: ask
-- test(1), which inherits our standard output).
local function stdout_is_tty()
  local term = os.getenv("TERM")
  if term == nil or term == "" or term == "dumb" then
    return false
  end
  return os.execute("test -t 1") == true
end

-- Sleep the whole interval even when a harmless signal cuts it short
-- (after Ctrl-C, lua5.4 raises "interrupted!" as soon as shm.sleep returns).
local function sleep(seconds)
  local done, left = shm.sleep(seconds)
  while not done do
    done, left = shm.sleep(left)
  end
end

command("watch", with_layout_options({
  summary = "show the fields of a layout, redrawn as they change",
  args = "ID",
  min_args = 1,
  max_args = 1,
  description = "Show the fields of a layout in the segment every interval, as dump\n"
    .. "--layout does, marking with * the fields that changed since the last frame.\n"
    .. "On a terminal the screen is redrawn in place; otherwise the frames follow\n"
    .. "each other, separated by a blank line. Ctrl-C stops it.",
  epilog = LAYOUT_EPILOG,
  { "offset", short = "o", type = "integer", min = 0, default = 0, help = "where the struct starts" },
  { "interval", short = "i", type = "number", min = 0, default = 1, metavar = "S",
    help = "seconds between frames" },
  { "frames", short = "f", type = "integer", min = 1, help = "stop after N frames (default: never)" },
}), function(opts, parser)
  local id = parse_id(parser, opts[1])
  local L = options_layout(parser, opts, "watch needs --layout FILE or --cdef FILE.h")
  local seg <close> = attach_ro(id)
  check_place(L, seg, id, opts.offset)
  local ansi = stdout_is_tty()
  local max = not opts.full and MAX_ITEMS or nil
  local prev, frame = nil, 0

  local function draw()
    frame = frame + 1
    local lines = field_lines(L, L:read(seg, opts.offset), opts.offset, "", max)
    local marks = {}
    for i, l in ipairs(lines) do
      marks[i] = prev ~= nil and l[5] ~= prev[i][5]
    end
    prev = lines
    local st = shm.stat(id)
    local head = sformat("segment %d, struct %s at offset %d, frame %d, %s%s", id, L.name or "{...}",
                         opts.offset, frame, os.date("%H:%M:%S"),
                         st and sformat(", %d attached%s", st.nattch, st.removed and ", removed" or "")
                         or ", removed")
    local text = render_fields(lines, marks, ansi)
    if ansi then
      emit("\27[H\27[2J", head, "\n\n", concat(text, "\n"), "\n")
    else
      emit(frame > 1 and "\n" or "", head, "\n", concat(text, "\n"), "\n")
    end
    flush_out()
  end

  local ok, err = pcall(function()
    draw()
    while not opts.frames or frame < opts.frames do
      sleep(opts.interval)
      draw()
    end
  end)
  if not ok then
    if type(err) == "string" and err:match("interrupted!$") then
      return 0 -- Ctrl-C: the way to stop watching
    end
    error(err, 0)
  end
  return 0
end)

-- ---- dictionaries -----------------------------------------------------------------

-- sysvshm.dict's layout (src/dict.h, dict_store.c), for reading a region
-- without the module's handle: nothing here is trusted, every offset and
-- length is checked as dict_store.c checks it, every walk is bounded.
local DICT = {
  VERSION = 1, MIN_REGION = 8192, HEADER = 512, ALIGN = 64, MAX_KEY = 65535,
  STATE = 192, SEQ = 128, ENTRY_HEAD = 56, ENTRY_TAG = 0x52544e45,
  HEAD_FMT = "=I4 I4 I8 I4 I4 I4 I4 I4 I4",               -- magic .. stripes_off
  STATE_FMT = "=I4 I4 I4 I4 I8 I8 I8 I8 I8 I8 I8 I8",      -- top .. repairs
  ENTRY_FMT = "=I4 I4 I4 I4 I4 I4 I4 I4 B xxx I4 i8 I8",   -- DictEntry, 56 bytes
  TYPES = { "boolean", "integer", "float", "string", "list" },
}

-- dict_layout: the geometry new() lays out in a region of that size.
local function dict_layout(region)
  if region < DICT.MIN_REGION or region > 0xffffffff - 8 then
    return nil
  end
  local ns = math.max(1, math.min(16, region // 65536))
  local nb = 16
  while nb < 1 << 24 and nb * 256 < region do
    nb = nb * 2
  end
  local g = { region = region, nstripes = ns, stripes_off = DICT.HEADER, nbuckets = nb,
              buckets_off = DICT.HEADER + ns * 256 }
  g.heap_off = (g.buckets_off + nb * 4 + 7) & ~7
  g.heap_end = region & ~7
  if g.heap_off >= g.heap_end or g.heap_end - g.heap_off < 1024 then
    return nil
  end
  return g
end

-- dict_hash, with Lua's wrapping 64-bit integers (native byte order).
local function dict_hash(k)
  local n = #k
  local h, pos = 0x9e3779b97f4a7c15 ~ n, 1
  while n - pos + 1 >= 8 do
    h = (h ~ string.unpack("=i8", k, pos)) * 0xff51afd7ed558ccd
    h = h ~ (h >> 32)
    pos = pos + 8
  end
  local rest = n - pos + 1
  local w = rest > 0 and string.unpack("=I" .. rest, k, pos) or 0
  h = (h ~ w) * 0xc4ceb9fe1a85ec53
  h = h ~ (h >> 29)
  return (h ~ (h >> 32)) & 0xffffffff
end

-- The elements of a list value (u32 count, then u8 type and 8 bytes, or
-- u32 length and bytes), or nil when it is malformed (as list_check).
local function list_items(v)
  if #v < 4 then
    return nil
  end
  local count, pos = string.unpack("=I4", v)
  local items = {}
  for i = 1, count do
    local t = v:byte(pos)
    if (t == 2 or t == 3) and #v - pos >= 8 then
      items[i] = string.unpack(t == 2 and "=i8" or "=d", v, pos + 1)
      pos = pos + 9
    elseif t == 4 and #v - pos >= 4 then
      local len = string.unpack("=I4", v, pos + 1)
      if len > #v - pos - 4 then
        return nil
      end
      items[i] = v:sub(pos + 5, pos + 4 + len)
      pos = pos + 5 + len
    else
      return nil
    end
  end
  return pos == #v + 1 and items or nil
end

-- The value of an entry of type vtype from its bytes (as dict_copyout).
local function dict_value(vtype, v)
  if vtype == 1 then
    return #v >= 1 and v:byte(1) ~= 0
  elseif vtype == 2 then
    return #v >= 8 and string.unpack("=i8", v) or 0
  elseif vtype == 3 then
    return #v >= 8 and string.unpack("=d", v) or 0.0
  elseif vtype == 4 then
    return v
  elseif vtype == 5 then
    return list_items(v)
  end
  return nil
end

local SNAPSHOT_TRIES = 50

--- Read the dictionary at offset `off` of segment `seg` (a read-only
-- attachment will do) without its handle, and without writing anything:
-- no lock, no read recorded for the LRU order. The region is copied under
-- its sequence number (again while a writer was changing it, up to 50
-- times) and every offset and length in the copy is checked as the module
-- checks them; what cannot be verified is left out and described in
-- `problems`.
-- @tparam segment seg
-- @tparam integer off the region start
-- @treturn[1] table `{ version, stats = {...}, entries = {{key, type,
--   size, flags, expire_ms, version, value}, ...} (sorted by key),
--   problems = {string,...}, consistent = boolean, now_ms }`
-- @treturn[2] nil
-- @treturn[2] string why there is no dictionary to read there
function M.read_dict(seg, off)
  local size = #seg
  if off > size or size - off < DICT.HEADER then
    return nil, sformat("no dictionary at offset %d (the segment has %d bytes)", off, size)
  end
  local what, version = holds(seg, off)
  if what ~= "dict" then
    return nil, sformat("no dictionary at offset %d%s", off,
                        what and sformat(" (it holds a %s)", what) or " (bad magic)")
  end
  if version ~= DICT.VERSION then
    return nil, sformat("the dictionary at offset %d has layout version %d; this sysvshm reads %d",
                        off, version, DICT.VERSION)
  end
  local _, _, region, nb, boff, hoff, hend, ns, soff = seg:unpack(DICT.HEAD_FMT, off)
  local g = region >= 0 and region <= size - off and dict_layout(region)
  if not g or g.nbuckets ~= nb or g.buckets_off ~= boff or g.heap_off ~= hoff or
     g.heap_end ~= hend or g.nstripes ~= ns or g.stripes_off ~= soff then
    return nil, sformat("the dictionary at offset %d is corrupt (header out of range)", off)
  end

  -- A copy of [0, top) taken between two equal, even sequence numbers.
  local snap, consistent, st
  for _ = 1, SNAPSHOT_TRIES do
    local s1 = seg:atomic_load(off + DICT.SEQ)
    st = table.pack(seg:unpack(DICT.STATE_FMT, off + DICT.STATE))
    local top = st[1]
    local len = (top % 8 == 0 and top >= g.heap_off and top <= g.heap_end) and top or g.heap_end
    snap = seg:read(off, len)
    local s2 = seg:atomic_load(off + DICT.SEQ)
    consistent = s1 == s2 and s1 & 1 == 0
    if consistent then
      break
    end
    sleep(0.001)
  end

  local problems = {}
  local function problem(fmt, ...)
    if #problems < 20 then
      problems[#problems + 1] = sformat(fmt, ...)
    end
  end
  local top = st[1]
  if not (top % 8 == 0 and top >= g.heap_off and top <= g.heap_end) then
    problem("top %d out of the heap [%d, %d]", top, g.heap_off, g.heap_end)
  end
  local max_entries = (g.heap_end - g.heap_off) // 8 + 1
  local limit = #snap

  -- The entry at eoff, or nil and why not (dict_entry's checks, and inside the copy).
  local function entry(eoff)
    if eoff % 8 ~= 0 or eoff < g.heap_off or eoff > g.heap_end - DICT.ENTRY_HEAD or
       eoff > limit - DICT.ENTRY_HEAD then
      return nil
    end
    local e = table.pack(string.unpack(DICT.ENTRY_FMT, snap, eoff + 1))
    local esize, tag, klen, vlen = e[1], e[2], e[7], e[8]
    if tag ~= DICT.ENTRY_TAG or esize % 8 ~= 0 or esize < DICT.ENTRY_HEAD or
       esize > g.heap_end - eoff or esize > limit - eoff or klen > DICT.MAX_KEY or vlen > esize or
       DICT.ENTRY_HEAD + klen + vlen > esize then
      return nil
    end
    return e
  end

  local now_ms = math.floor(shm.clock() * 1000)
  local entries, seen, count = {}, {}, 0
  local mask = nb - 1
  local CHUNK = 256
  for first = 0, nb - 1, CHUNK do
    local n = math.min(CHUNK, nb - first)
    local heads = { string.unpack("=" .. ("I4"):rep(n), snap, boff + 4 * first + 1) }
    for i = 1, n do
      local b, eoff, steps = first + i - 1, heads[i], max_entries
      while eoff ~= 0 do
        if steps == 0 or count >= max_entries then
          problem("bucket %d: the chain does not end", b)
          break
        end
        steps = steps - 1
        if seen[eoff] then
          problem("bucket %d: entry at %d reached twice (a loop or a shared chain)", b, eoff)
          break
        end
        local e = entry(eoff)
        if not e then
          problem("bucket %d: no entry at %d", b, eoff)
          break
        end
        local klen, vlen = e[7], e[8]
        local key = snap:sub(eoff + DICT.ENTRY_HEAD + 1, eoff + DICT.ENTRY_HEAD + klen)
        if e[4] & mask ~= b or dict_hash(key) ~= e[4] then
          problem("entry at %d: its hash does not match its key or bucket", eoff)
          break
        end
        seen[eoff] = true
        count = count + 1
        local vstart = eoff + DICT.ENTRY_HEAD + klen
        local vtype = e[9]
        local value = dict_value(vtype, snap:sub(vstart + 1, vstart + vlen))
        if vtype == 5 and value == nil then
          problem("entry at %d: the list value is malformed", eoff)
        elseif DICT.TYPES[vtype] == nil then
          problem("entry at %d: unknown value type %d", eoff, vtype)
        end
        entries[#entries + 1] = {
          key = key, type = DICT.TYPES[vtype] or sformat("unknown(%d)", vtype), size = vlen,
          flags = e[10], expire_ms = e[11], version = e[12], value = value, offset = eoff,
          bytes = e[1],
        }
        eoff = e[3]
      end
    end
  end
  table.sort(entries, function(a, b) return a.key < b.key end)

  local free = (g.heap_end - (top >= g.heap_off and top <= g.heap_end and top or g.heap_end))
    + math.max(0, st[8])
  local largest = free & ~7
  largest = largest > DICT.ENTRY_HEAD and largest - DICT.ENTRY_HEAD or 0
  return {
    version = version, consistent = consistent, problems = problems, entries = entries,
    now_ms = now_ms,
    stats = { entries = st[6], used = st[7], free = free, largest = largest, capacity = region,
              evictions = st[9], expirations = st[10], contention = st[11], repairs = st[12] },
  }
end

--- The order of the `stats` fields in `dict --json` (those of `d:stats()`).
M.DICT_STATS = { "entries", "used", "free", "largest", "capacity", "evictions", "expirations",
                 "contention", "repairs" }

-- Seconds left before an entry expires: nil never, 0 expired.
local function ttl_of(e, now_ms)
  if e.expire_ms == 0 then
    return nil
  end
  return math.max(0, e.expire_ms - now_ms) / 1000
end

local DICT_ENTRY_FIELDS = { "key", "key_hex", "type", "size", "flags", "ttl", "expired", "version",
                            "value", "value_hex", "items" }

local MAX_SHOWN = 40 -- bytes of a string value shown (without --full)

local function value_text(e, full)
  local v = e.value
  if e.type == "string" then
    if not full and #v > MAX_SHOWN then
      return quote_bytes(v:sub(1, MAX_SHOWN)) .. sformat("... (%d bytes)", #v)
    end
    return quote_bytes(v)
  elseif e.type == "list" then
    if v == nil then
      return "(malformed)"
    end
    return sformat("[%d item%s]", #v, #v == 1 and "" or "s")
  elseif e.type == "float" then
    return sformat("%.17g", v)
  elseif v == nil then
    return "?"
  end
  return tostring(v)
end

-- A string for JSON: itself when it is UTF-8, else nil (the caller then
-- gives its bytes in hex).
local function utf8_or_nil(s)
  return utf8.len(s) and s or nil
end

local function hex(s)
  return (s:gsub(".", function(c) return sformat("%02x", c:byte()) end))
end

command("dict", {
  summary = "list the entries of a sysvshm.dict",
  args = "ID",
  min_args = 1,
  max_args = 1,
  description = "List the entries of the dictionary (sysvshm.dict) at --offset in the\n"
    .. "segment: key, value type, value size in bytes, flags, seconds to live (-\n"
    .. "for never) and the value (strings cut after 40 bytes unless --full), sorted\n"
    .. "by key, then the numbers of d:stats().",
  epilog = "The segment is attached read-only and nothing is written: no lock is taken\n"
    .. "and no read counts for the LRU order. The region is copied between two\n"
    .. "equal sequence numbers (a consistent snapshot; if writers never let it be\n"
    .. "one, the listing says so) and every offset in the copy is checked: what is\n"
    .. "not sound is left out and reported, with status 1.\n"
    .. "With --json, one object: id, offset, version, consistent, stats, entries\n"
    .. "(key, type, size, flags, ttl: seconds or null, expired, version, value for\n"
    .. "booleans, numbers and UTF-8 strings, items for lists; key_hex / value_hex\n"
    .. "for bytes that are not UTF-8), problems.",
  { "offset", short = "o", type = "integer", min = 0, default = 0,
    help = "where the dictionary starts (a multiple of 64)" },
  { "full", type = "flag", help = "show string values whole" },
  { "json", short = "j", type = "flag", help = "one JSON object instead of a table" },
}, function(opts, parser)
  local id = parse_id(parser, opts[1])
  if opts.offset % DICT.ALIGN ~= 0 then
    usage_error(parser, "option --offset: %d is not a multiple of %d", opts.offset, DICT.ALIGN)
  end
  local seg <close> = attach_ro(id)
  local d, why = M.read_dict(seg, opts.offset)
  if not d then
    fail("segment %d: %s", id, why)
  end
  seg:detach()

  if opts.json then
    local list = setmetatable({}, M.json_array)
    for i, e in ipairs(d.entries) do
      local ttl = ttl_of(e, d.now_ms)
      local o = { key = utf8_or_nil(e.key), type = e.type, size = e.size, flags = e.flags,
                  ttl = ttl, expired = ttl == 0, version = e.version }
      if not o.key then
        o.key_hex = hex(e.key)
      end
      if e.type == "string" then
        o.value = utf8_or_nil(e.value)
        if not o.value then
          o.value_hex = hex(e.value)
        end
      elseif e.type == "list" then
        o.items = e.value and #e.value
      else
        o.value = e.value
      end
      -- every field that is there, and ttl also when it is null (never)
      local parts = {}
      for _, k in ipairs(DICT_ENTRY_FIELDS) do
        if o[k] ~= nil or k == "ttl" then
          parts[#parts + 1] = M.json(k) .. ":" .. M.json(o[k])
        end
      end
      list[i] = "{" .. concat(parts, ",") .. "}"
    end
    local problems = setmetatable({}, M.json_array)
    for i, p in ipairs(d.problems) do
      problems[i] = M.json(p)
    end
    emit("{", sformat('"id":%d,"offset":%d,"version":%d,"consistent":%s,"stats":%s,', id,
                      opts.offset, d.version, tostring(d.consistent), M.json(d.stats, M.DICT_STATS)),
         '"entries":[', concat(list, ","), '],"problems":[', concat(problems, ","), "]}\n")
  else
    local rows = { { "KEY", "TYPE", "SIZE", "FLAGS", "TTL", "VALUE" } }
    for _, e in ipairs(d.entries) do
      local ttl = ttl_of(e, d.now_ms)
      rows[#rows + 1] = { quote_bytes(e.key), e.type, tostring(e.size), int_string(e.flags),
                          ttl == nil and "-" or ttl == 0 and "expired" or sformat("%.3f", ttl),
                          value_text(e, opts.full) }
    end
    print_table(rows, { false, false, true, true, true, false })
    local s = d.stats
    emit(sformat("%d entr%s, %d bytes used, %d free (largest value %d), capacity %d; "
                   .. "evictions %d, expirations %d, contention %d, repairs %d%s\n",
                 s.entries, s.entries == 1 and "y" or "ies", s.used, s.free, s.largest, s.capacity,
                 s.evictions, s.expirations, s.contention, s.repairs,
                 d.consistent and "" or " (writers kept changing it: not a consistent snapshot)"))
  end
  flush_out()
  for _, p in ipairs(d.problems) do
    io.stderr:write(PROG, " dict: segment ", id, ": ", p,
                    d.consistent and "" or " (read while writers changed it: maybe a torn copy)", "\n")
  end
  return #d.problems > 0 and 1 or 0
end)

command("rm", {
  summary = "remove segments or semaphore sets; prints how many went",
  args = "[ID...]",
  description = "Mark segments for removal (IPC_RMID): given by id, by key, or all of\n"
    .. "this user's segments that no process has attached. A segment goes once\n"
    .. "the last process detaches. Prints how many were removed (and their ids);\n"
    .. "the status is 1 when any could not be. With --sem, remove semaphore sets\n"
    .. "(by id or key) instead: at once, waking who waits on them with EIDRM.",
  KEY_OPTION,
  SEM_OPTION,
  { "mine-unattached", short = "u", type = "flag",
    help = "every segment this user owns or created with no attachment" },
  { "dry-run", short = "n", type = "flag", help = "only say what would be removed" },
}, function(opts, parser)
  local forms = (#opts > 0 and 1 or 0) + (opts.key and 1 or 0) + (opts.mine_unattached and 1 or 0)
  if forms ~= 1 then
    usage_error(parser, "give segment ids, --key or --mine-unattached (%s)",
                forms == 0 and "none given" or "only one of them")
  end
  if opts.sem and opts.mine_unattached then
    usage_error(parser, "--mine-unattached is for segments only (a semaphore set has no attachments)")
  end
  local ids = {}
  if #opts > 0 then
    for i = 1, #opts do
      ids[i] = parse_id(parser, opts[i])
    end
  elseif opts.key then
    ids[1] = (opts.sem and sem_open_key_or_fail or open_key_or_fail)(opts.key)
  else
    local uid = euid()
    for _, st in ipairs(list_or_fail()) do
      if mine(st, uid) and st.nattch == 0 and not st.removed then
        ids[#ids + 1] = st.id
      end
    end
  end

  local gone, failed = {}, 0
  for _, id in ipairs(ids) do
    local ok, msg, errno
    if opts.mine_unattached then
      -- Look again just before: one attached since the listing stays.
      local st = shm.stat(id)
      ok = st and st.nattch == 0 and not st.removed
      if ok and not opts.dry_run then
        ok, msg, errno = shm.remove(id)
      end
    elseif opts.sem then
      ok, msg, errno = sem.semctl(id, 0, opts.dry_run and sem.IPC_STAT or sem.IPC_RMID)
    elseif opts.dry_run then
      ok, msg, errno = shm.stat(id)
    else
      ok, msg, errno = shm.remove(id)
    end
    if ok then
      gone[#gone + 1] = tostring(id)
    elseif msg then
      failed = failed + 1
      io.stderr:write(PROG, " rm: ", (opts.sem and sem_about or about)(id, msg, errno), "\n")
    end
  end
  local n = #gone
  local what = opts.sem and (n == 1 and " semaphore set" or " semaphore sets")
    or (n == 1 and " segment" or " segments")
  emit(opts.dry_run and "would remove " or "removed ", n, what,
                  n > 0 and ": " .. concat(gone, " ") or "", "\n")
  return failed > 0 and 1 or 0
end)

-- Permission bits: octal (0600, 600) or as ls shows them (rw-------).
local function parse_mode(parser, s)
  if s:match("^0?[0-7][0-7]?[0-7]?$") or s:match("^0[oO][0-7]+$") then
    local v = tonumber(s:gsub("^0[oO]", ""), 8)
    if v <= 0x1ff then
      return v
    end
  elseif #s == 9 and s:match("^[r-][w-][x-][r-][w-][x-][r-][w-][x-]$") then
    local v = 0
    for i = 1, 9 do
      v = v << 1 | (s:sub(i, i) ~= "-" and 1 or 0)
    end
    return v
  end
  usage_error(parser, "option --mode: '%s' is not a mode (octal, 0600, or rw-------)", s)
end

-- A size: bytes, or with a suffix K, M, G, T (powers of 1024; KiB, kB... too).
local function parse_size(parser, s)
  local digits, unit = s:match("^(%d+)([KMGTkmgt]?)[iI]?[bB]?$")
  local v = digits and math.tointeger(tonumber(digits))
  local shift = ({ [""] = 0, k = 10, m = 20, g = 30, t = 40 })[(unit or ""):lower()]
  if v and shift and v <= math.maxinteger >> shift then
    v = v << shift
    if v >= 1 then
      return v
    end
  end
  usage_error(parser, "option --size: '%s' is not a size (bytes, or with K, M, G, T: 4096, 4K, 1M)", s)
end

command("new", {
  summary = "create a segment and print its id",
  description = "Create a segment and print its id alone on a line, for scripts:\n"
    .. "    id=$(sysvshm new --size 4K)\n"
    .. "Without --key the segment is private (IPC_PRIVATE); with a key that is\n"
    .. "taken, nothing is created and the status is 1.",
  { "size", short = "s", metavar = "N", help = "size in bytes, or with K, M, G, T (required)" },
  KEY_OPTION,
  { "mode", short = "m", metavar = "MODE", default = "0600",
    help = "permission bits, octal or as rw-r-----" },
}, function(opts, parser)
  if opts.size == nil then
    usage_error(parser, "option --size is required")
  end
  local size = parse_size(parser, opts.size)
  local mode = parse_mode(parser, opts.mode)
  local key = opts.key or shm.IPC_PRIVATE
  local id, msg = shm.create(key, size, { mode = mode })
  if not id then
    fail("cannot create a segment of %d bytes%s: %s", size,
         opts.key and " with key " .. key_string(key) or "", msg)
  end
  -- The id is the only way to the new segment: if it cannot be written,
  -- remove the segment again rather than leave it behind unknown.
  local wrote, err = pcall(function()
    emit(id, "\n")
    flush_out()
  end)
  if not wrote then
    local removed, rmsg = shm.remove(id)
    fail("%s; segment %d %s", getmetatable(err) == Failure and err.message or tostring(err), id,
         removed and "removed again" or ("could not be removed: " .. tostring(rmsg)))
  end
  return 0
end)

-- ---- the main parser --------------------------------------------------------------

local function main_parser()
  local lines = {}
  for _, name in ipairs(order) do
    lines[#lines + 1] = sformat("  %-6s %s", name, commands[name].summary)
  end
  return options.new {
    prog = PROG,
    args = "COMMAND [ARG...]",
    options_first = true,
    description = "Find, inspect and clean up System V shared memory segments.\n\ncommands:\n"
      .. concat(lines, "\n") .. "\n  help   the usage of a command",
    epilog = "'sysvshm COMMAND --help' shows a command's options.\n"
      .. "Exit status: 0 ok, 1 refused by the system or not possible, 2 bad usage.",
    { "version", short = "V", type = "flag", help = "show the version and exit" },
  }
end

local function run(args)
  local top = main_parser()
  local g = parse(top, args)
  if not g then
    return 0
  end
  if g.version then
    emit(shm._VERSION, "\n")
    return 0
  end
  local name = g[1]
  if name == nil then
    usage_error(top, "missing command")
  end
  local rest = table.move(g, 2, #g, 1, {})
  if name == "help" then
    local which = rest[1]
    if which == nil then
      emit(top:usage())
      return 0
    elseif commands[which] == nil or #rest > 1 then
      usage_error(top, "help: unknown command '%s'", rest[#rest])
    end
    emit(commands[which].parser:usage())
    return 0
  end
  local cmd = commands[name]
  if cmd == nil then
    usage_error(top, "unknown command '%s'", name)
  end
  local opts = parse(cmd.parser, rest)
  if not opts then
    return 0
  end
  return cmd.run(opts, cmd.parser)
end

--- Run the command line `args` (`args[1]` the subcommand, as `arg` holds
-- it) and return the exit status: 0 done, 1 not possible (refused by the
-- system, no such segment, a bad layout file), 2 bad usage, 70 a bug, 130
-- interrupted. Messages go to standard error; nothing is raised.
-- @tparam {string,...} args
-- @treturn integer the exit status
-- @usage os.exit(require("sysvshm.cli").main(arg))
function M.main(args)
  args = args or {}
  local strs = {}
  for i = 1, #args do
    strs[i] = tostring(args[i])
  end
  local ok, res = xpcall(run, function(e)
    if getmetatable(e) == Failure then
      return e
    end
    if type(e) == "string" and e:match("interrupted!$") then
      return setmetatable({ status = 130, message = "interrupted" }, Failure)
    end
    local msg = "internal error: " .. tostring(e)
    if os.getenv("SYSVSHM_DEBUG") then
      msg = debug.traceback(msg, 2)
    else
      msg = msg .. " (run with SYSVSHM_DEBUG=1 for details)"
    end
    return setmetatable({ status = 70, message = msg }, Failure)
  end, strs)
  -- What is still buffered must reach its destination too.
  local flushed, ferr = io.stdout:flush()
  if not flushed and (ok or res.status == 0) then
    ok, res = false, setmetatable({ status = 1, message = "cannot write the output: " .. tostring(ferr) }, Failure)
  end
  if ok then
    return res
  end
  local cmd = commands[strs[1]]
  local prog = res.parser and res.parser.prog or cmd and cmd.parser.prog or PROG
  io.stderr:write(prog, ": ", res.message, "\n")
  if res.parser then
    io.stderr:write(res.parser:usage())
  end
  return res.status
end

return M
