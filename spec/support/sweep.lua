-- The bad-input sweep: every public function and method (module functions,
-- segment methods and metamethods, mutex and channel methods, layout
-- views), generated from one table, is called with every value of a fixed
-- set at every argument position, on an attached, a read-only, a detached
-- and a removed-but-attached segment.  Each call must either return or
-- raise an error; the process must never die; the bytes of the segments
-- outside the call's own range must never change (nothing at all when the
-- call raises or writes through a read-only or detached attachment); and
-- where an argument can never be valid (a string for an offset, a
-- fraction, a non-segment for a segment) the call must raise, not return.
--
-- The calls run in child processes (this file run as a script by lua5.4
-- with a chunk name), in a private System V IPC namespace when `unshare
-- --ipc` works (as root), so that a crash is a failure naming the call
-- (each child writes the call it is about to make to a progress file) and
-- ids from the value set such as 0 or 1 can only ever name the sweep's own
-- segments.
-- Without a private namespace, calls that would attach, remove or change a
-- segment the sweep did not create are skipped.
--
-- Where the cross product of a function's values is small it is run whole;
-- otherwise every value is tried at every position with the other
-- arguments at valid baselines (on each kind of segment), plus a random
-- sample of combinations with a fixed seed (SYSVSHM_STRESS_SCALE scales the
-- sample, never the per-position coverage).  Calls that could block for
-- ever by contract are skipped and counted: sleeps longer than 10 ms, and
-- waits on a word that holds the expected value without a short timeout.
-- Each spec prints how many calls its chunks made.
--
-- The targets come in chunks, one child process each; each module's spec
-- runs the chunk of that module (the list below says which spec runs
-- which chunk), as one test inside describe("bad-input sweep"):
--
--     require("support.sweep").describe("mutex")  -- in spec/mutex_spec.lua
--
-- busted's lpath (.busted) has ./spec/?.lua, and this file's name does not
-- end in _spec, so busted loads it only through that require.  The bugs
-- the sweep found stay as probes (`probe` below) in the spec of the module
-- they were in.

local SIZE = 4096 -- of every sweep segment: one page, so running past it faults
local MUTEX_OFF = 0 -- the fixture mutex
local VIEW_OFF = 128 -- the fixture layout view
local CH_OFF, CH_SIZE = 1024, 2048 -- the fixture channel

-- Chunks of targets, one child process each.
local CHUNKS = {
  -- spec/01-module_spec.lua
  { name = "module", targets = { "ftok", "create", "open", "attach", "stat", "remove", "shmget",
    "shmat", "shmdt", "shmctl", "sleep", "clock", "type", "list" } },
  -- spec/02-segment_spec.lua
  { name = "bytes", targets = { "size", "id", "readonly", "read", "write", "byte", "setbyte",
    "cstring", "fill", "detach", "__len", "__tostring", "__gc", "__close" } },
  -- spec/pack_spec.lua
  { name = "pack", targets = { "pack", "unpack" } },
  -- spec/atomic_spec.lua
  { name = "atomics", targets = { "atomic_load", "atomic_store", "atomic_add", "atomic_cas",
    "wait", "wake" } },
  -- spec/mutex_spec.lua
  { name = "mutex", targets = { "mutex", "lock", "trylock", "unlock", "with", "locked",
    "mutex.__gc", "mutex.__tostring" } },
  -- spec/channel_spec.lua
  { name = "channel", targets = { "channel.new", "channel.open", "send", "recv", "sendpack",
    "recvunpack", "send_many", "recv_many", "close", "closed", "maxsize", "pending",
    "channel.__gc", "channel.__tostring" } },
  -- spec/layout_spec.lua
  { name = "layout", targets = { "L:view", "L:read", "L:write", "view[k]", "view[k]=v",
    "array[i]", "array[i]=v" } },
  -- random sequences of calls from every target, without restoring the
  -- fixtures between the calls of a sequence: a crash is the failure here.
  -- spec/02-segment_spec.lua: what a sequence adds to the chunks above is
  -- the segments' state carried from call to call (detached, removed,
  -- locked or re-moded by one call, used by the next): the life cycle of a
  -- segment, which that spec covers
  { name = "sequences", sequences = true },
}

-- ===========================================================================
-- The child: lua5.4 spec/support/sweep.lua CHUNK MODE PROGRESS
-- ===========================================================================

local function child(chunkname, mode, progress_path)
  local shm = require "sysvshm"
  local channel = require "sysvshm.channel"
  local layout = require "sysvshm.layout"

  local private = mode == "private"
  local scale = tonumber(os.getenv("SYSVSHM_STRESS_SCALE") or "") or 1
  -- the whole cross product up to FULL combinations, else SAMPLE random ones
  local FULL = math.max(1500, math.floor(25000 * scale))
  local SAMPLE = math.max(200, math.floor(4000 * scale))
  local MSIZE = shm.MUTEX_SIZE
  local INT_MAX = 0x7fffffff

  local mypid = math.tointeger(tonumber(io.open("/proc/self/stat"):read("l"):match("^%d+")))
  do
    local f = assert(io.open(progress_path .. ".pid", "w"))
    f:write(mypid, "\n")
    f:close()
  end
  local progress = assert(io.open(progress_path, "w"))

  local failures, calls, skipped, rebuilds = {}, 0, 0, 0
  local function fail(msg)
    if #failures < 40 then failures[#failures + 1] = msg end
  end

  -- ---- fixtures -------------------------------------------------------------

  local Rec = layout.struct({ { "a", "i4" }, { "b", "d" }, { "name", "c8" }, { "arr", "i2", 4 },
    { "u", "I8" }, { "f", "f" } }, "rec")

  local ours = {} -- ids of segments this process created
  local F = {}

  local function pattern(n, seed)
    local t = {}
    for i = 1, n do t[i] = string.char((i * 37 + seed) % 251) end -- some NULs
    return table.concat(t)
  end

  local function newid(size)
    local id = assert(shm.create(shm.IPC_PRIVATE, size))
    ours[id] = true
    return id
  end

  local function teardown()
    for _, k in ipairs { "mA", "mM" } do
      local m = F[k]
      if m and m:locked() then pcall(m.unlock, m) end
    end
    for _, k in ipairs { "A", "R", "M", "monX", "monY" } do
      if F[k] then pcall(F[k].detach, F[k]) end
    end
    for _, k in ipairs { "xid", "yid" } do
      if F[k] then shm.remove(F[k]) end
    end
    F = { guard = F.guard, guardbytes = F.guardbytes, gid = F.gid }
    collectgarbage()
  end

  -- X: attached read-write (A), read-only (R), detached (D); Y: removed
  -- while attached (M).  monX and monY are attachments the calls never
  -- see, to snapshot and restore the bytes.  Both hold the same structures:
  -- a mutex at MUTEX_OFF, a channel with one message queued at CH_OFF,
  -- pattern bytes elsewhere.
  local function build()
    teardown()
    F.xid, F.yid = newid(SIZE), newid(SIZE)
    F.monX, F.monY = assert(shm.attach(F.xid)), assert(shm.attach(F.yid))
    for k, mon in ipairs { F.monX, F.monY } do
      mon:write(0, pattern(SIZE, k))
      shm.mutex(mon, MUTEX_OFF)
      assert(channel.new(mon, CH_OFF, CH_SIZE):send("hello"))
      Rec:write(mon, VIEW_OFF, { a = 1, b = 2.5, name = "rec", arr = { 1, 2, 3, 4 }, u = 7, f = 0.5 })
    end
    F.pristine = { X = F.monX:read(0), Y = F.monY:read(0) }
    F.A = assert(shm.attach(F.xid))
    F.R = assert(shm.attach(F.xid, { readonly = true }))
    F.D = assert(shm.attach(F.xid))
    F.M = assert(shm.attach(F.yid))
    assert(shm.remove(F.yid))
    F.mA = shm.mutex(F.A, MUTEX_OFF, { open = true })
    F.mM = shm.mutex(F.M, MUTEX_OFF, { open = true })
    F.mD = shm.mutex(F.D, MUTEX_OFF, { open = true })
    F.chA = channel.open(F.A, CH_OFF)
    F.chM = channel.open(F.M, CH_OFF)
    F.chD = channel.open(F.D, CH_OFF)
    F.vA, F.vR, F.vM, F.vD = Rec:view(F.A, VIEW_OFF), Rec:view(F.R, VIEW_OFF),
      Rec:view(F.M, VIEW_OFF), Rec:view(F.D, VIEW_OFF)
    F.arrA, F.arrR, F.arrM, F.arrD = F.vA.arr, F.vR.arr, F.vM.arr, F.vD.arr
    assert(F.D:detach())
    local s = newid(64)
    assert(shm.remove(s))
    ours[s] = nil
    F.stale = s -- an id that is gone
    -- which segment each handle writes into
    F.segof = {
      [F.A] = "X", [F.R] = "X", [F.D] = "X", [F.M] = "Y",
      [F.mA] = "X", [F.mD] = "X", [F.mM] = "Y",
      [F.chA] = "X", [F.chD] = "X", [F.chM] = "Y",
      [F.vA] = "X", [F.vR] = "X", [F.vD] = "X", [F.vM] = "Y",
      [F.arrA] = "X", [F.arrR] = "X", [F.arrD] = "X", [F.arrM] = "Y",
    }
    F.writable = { [F.A] = true, [F.M] = true, [F.mA] = true, [F.mM] = true, [F.chA] = true,
      [F.chM] = true, [F.vA] = true, [F.vM] = true, [F.arrA] = true, [F.arrM] = true }
    F.attached = { [F.A] = true, [F.M] = true, [F.R] = true }
  end

  -- A segment no call ever gets: it must never change.
  F.gid = newid(SIZE)
  F.guard = assert(shm.attach(F.gid))
  F.guard:write(0, pattern(SIZE, 99))
  F.guardbytes = F.guard:read(0)
  build()

  -- Put the fixtures back: unlock, rebuild when a call detached, removed,
  -- re-moded or locked them, restore the bytes.
  local dirty = false
  local function settle()
    for _, k in ipairs { "mA", "mM" } do
      local m = F[k]
      if m:locked() then
        local ok = pcall(m.unlock, m)
        if not ok then dirty = true end
      end
    end
    local ok = not dirty and shm.type(F.A) == "segment" and shm.type(F.R) == "segment"
      and shm.type(F.M) == "segment" and shm.type(F.D) == "detached segment"
      and shm.type(F.monX) == "segment" and shm.type(F.monY) == "segment"
    if ok then
      local sx, sy = shm.stat(F.xid), shm.stat(F.yid)
      ok = sx and sy and not sx.removed and sy.removed and sx.mode == 384 and sy.mode == 384
        and not sx.locked and not sy.locked
    end
    dirty = false
    if not ok then
      rebuilds = rebuilds + 1
      build()
      return
    end
    for s, mon in pairs { X = F.monX, Y = F.monY } do
      if mon:read(0) ~= F.pristine[s] then mon:write(0, F.pristine[s]) end
    end
  end

  -- ---- values ---------------------------------------------------------------

  local function fn(...) return ... end

  local function V(name, v) return { name = name, v = v } end
  local function Mk(name, make) return { name = name, make = make } end
  local function Fx(name) return { name = name, get = function() return F[name] end } end

  local GENERIC = {
    V("nil", nil), V("true", true), V("false", false), V('""', ""), V('"x"', "x"),
    V('"10"', "10"), Mk("{}", function() return {} end), V("function", fn),
    V("0/0", 0 / 0), V("math.huge", math.huge), V("-math.huge", -math.huge), V("1.5", 1.5),
    V("math.mininteger", math.mininteger), V("math.maxinteger", math.maxinteger),
    V("-1", -1), V("0", 0), V("size", SIZE), V("size+1", SIZE + 1), V("size-1", SIZE - 1),
    V("maxinteger-2", math.maxinteger - 2),
  }

  local function tbl(name, t)
    return Mk(name, function()
      local c = {}
      for k, v in pairs(t) do c[k] = v end
      return c
    end)
  end

  local SEGS = { Fx("A"), Fx("R"), Fx("D"), Fx("M") }
  local OTHERS = { Fx("mA"), Fx("chA"), V("io.stdout", io.stdout) }

  -- Extra values by kind of argument (on top of GENERIC, and NONE where
  -- the argument is optional or the last one).
  local EXTRA = {
    seg = { SEGS[1], SEGS[2], SEGS[3], SEGS[4], OTHERS[1], OTHERS[2], OTHERS[3] },
    off = { V("7", 7), V("8", 8), V("64", 64), V("100", 100), V("128", 128), V("size-8", SIZE - 8),
      V("size-4", SIZE - 4), V("8.0", 8.0), V("2^53", 2 ^ 53) },
    len = { V("1", 1), V("8", 8), V("100", 100), V("3.0", 3.0) },
    byte = { V("255", 255), V("256", 256), V('"ab"', "ab"), V('"\\0"', "\0"), V("65", 65) },
    str = { V('"abc"', "abc"), V("8 NULs", ("\0"):rep(8)), V("size bytes", ("y"):rep(SIZE)),
      V("size+1 bytes", ("y"):rep(SIZE + 1)), V("12", 12) },
    int = { V("1", 1), V("2^62", 1 << 62), V("2^32", 1 << 32), V("-2^31", -(1 << 31)),
      V("8.0", 8.0), V("-0.0", -0.0) },
    timeout = { V("0.001", 0.001), V("1e-9", 1e-9), V("0.01", 0.01), V("1e300", 1e300) },
    count = { V("1", 1), V("2^31", 1 << 31), V("INT_MAX", INT_MAX) },
    fmt = { V('"i4"', "i4"), V('"<i8"', "<i8"), V('"!8 j"', "!8 j"), V('"d"', "d"),
      V('"z"', "z"), V('"s1"', "s1"), V('"c3"', "c3"), V('"Xi8 i1"', "Xi8 i1"),
      V('"i16"', "i16"), V('"i17"', "i17"), V('"c"', "c"), V('">I3 xx h"', ">I3 xx h"),
      V('"s"', "s"), V('"j j j j"', "j j j j"), V('"c4096"', "c4096"), V('"c4097"', "c4097"),
      V('"!3 i4"', "!3 i4"), V('"X"', "X"), V('"Xz"', "Xz"), V('"c99999999999"', "c99999999999"),
      V('"i0"', "i0"), V('"s16"', "s16"), V('"f n"', "f n"), V('"=I"', "=I"), V('"xx"', "xx") },
    any = { V('"str"', "str"), V("12345", 12345), V('"\\0 in z"', "a\0b"), V("2^63 float", 2 ^ 63) },
    key = { V("IPC_PRIVATE", shm.IPC_PRIVATE), V("0x7fffffff", INT_MAX), V("0xffffffff", 0xffffffff),
      V("-2^31", -(1 << 31)), V("2^32", 1 << 32), V("0x5eed", 0x5eed) },
    size = { V("1", 1), V("64", 64) },
    id = { { name = "id(X)", get = function() return F.xid end },
      { name = "id(Y, removed)", get = function() return F.yid end },
      { name = "id(stale)", get = function() return F.stale end },
      V("INT_MAX", INT_MAX), V("2^31", 1 << 31) },
    flags = { V("SHM_RDONLY", shm.SHM_RDONLY), V("SHM_RND", shm.SHM_RND),
      V("IPC_CREAT|0600", shm.IPC_CREAT | 384), V("IPC_CREAT|IPC_EXCL|0644", shm.IPC_CREAT | shm.IPC_EXCL | 420),
      V("IPC_CREAT|0777", shm.IPC_CREAT | 511), V("0x7fffffff", INT_MAX), V("2^31", 1 << 31) },
    cmd = { V("IPC_STAT", shm.IPC_STAT), V("IPC_SET", shm.IPC_SET), V("IPC_RMID", shm.IPC_RMID),
      V("SHM_LOCK", shm.SHM_LOCK), V("SHM_UNLOCK", shm.SHM_UNLOCK), V("99", 99) },
    ctl = { tbl("{mode=0600}", { mode = 384 }), tbl("{mode=0777}", { mode = 511 }),
      tbl("{uid=0,gid=0}", { uid = 0, gid = 0 }), tbl("{mode=-1}", { mode = -1 }),
      tbl("{bogus=1}", { bogus = 1 }), tbl('{uid="x"}', { uid = "x" }), tbl("{uid=2^32}", { uid = 1 << 32 }),
      tbl("{mode=1.5}", { mode = 1.5 }) },
    copts = { tbl("{mode=0600}", { mode = 384 }), tbl("{mode=0777}", { mode = 511 }),
      tbl("{mode=-1}", { mode = -1 }), tbl("{mode=0x10000}", { mode = 0x10000 }),
      tbl("{exclusive=false}", { exclusive = false }), tbl("{exclusive=1}", { exclusive = 1 }),
      tbl("{bogus=1}", { bogus = 1 }), tbl("{[1]=true}", { true }), tbl("{mode=1.5}", { mode = 1.5 }) },
    aopts = { tbl("{readonly=true}", { readonly = true }), tbl("{readonly=false}", { readonly = false }),
      tbl("{readonly=1}", { readonly = 1 }), tbl("{bogus=true}", { bogus = true }) },
    mopts = { tbl("{open=true}", { open = true }), tbl("{open=false}", { open = false }),
      tbl("{open=1}", { open = 1 }) },
    path = { V('"/tmp"', "/tmp"), V('"/nonexistent/x"', "/nonexistent/x"), V('"/"', "/"),
      V("path with NUL", "/tmp\0x") },
    proj = { V('"A"', "A"), V('"AB"', "AB"), V("65", 65), V("256", 256), V("2^31", 1 << 31) },
    seconds = { V("0.001", 0.001), V("1e-300", 1e-300) },
    mutex = { Fx("mA"), Fx("mM"), Fx("mD"), Fx("A"), Fx("chA") },
    chan = { Fx("chA"), Fx("chM"), Fx("chD"), Fx("A"), Fx("mA") },
    view = { Fx("vA"), Fx("vR"), Fx("vM"), Fx("vD") },
    array = { Fx("arrA"), Fx("arrR"), Fx("arrM"), Fx("arrD") },
    field = { V('"a"', "a"), V('"b"', "b"), V('"name"', "name"), V('"arr"', "arr"), V('"u"', "u"),
      V('"f"', "f"), V('"nope"', "nope"), V('"arr[2]"', "arr[2]") },
    fval = { V("2^31", 1 << 31), V("-2^31-1", -(1 << 31) - 1), V('"abcdefgh"', "abcdefgh"),
      V('"abcdefghi"', "abcdefghi"), tbl("{1,2,3,4}", { 1, 2, 3, 4 }), tbl("{1,2,3,4,5}", { 1, 2, 3, 4, 5 }),
      tbl("{1,2,3.5}", { 1, 2, 3.5 }), V("7", 7), V("-7", -7), V("2^63 float", 2 ^ 63) },
    rec = { tbl("{a=1}", { a = 1 }), tbl("{nope=1}", { nope = 1 }), tbl("{arr={1,2}}", { arr = { 1, 2 } }),
      tbl('{name="too long!"}', { name = "too long!" }), tbl("{a=2^40}", { a = 1 << 40 }) },
    fn = { V("raises", function() error("boom") end),
      V("raises a table", function() error({}) end),
      V("unlocks mA", function() return F.mA:unlock() end),
      -- the with-detach bug (spec/mutex_spec.lua)
      V("unlocks mA, detaches A", function() F.mA:unlock() return F.A:detach() end),
      V("collects mA, detaches A", function() getmetatable(F.mA).__gc(F.mA) return F.A:detach() end),
      V("detaches A", function() return F.A:detach() end),
      V("locks mA", function() return F.mA:lock(0) end),
      V("yields", function() return coroutine.yield() end) },
    msg = { V('"hello"', "hello"), V("maxsize bytes", ("m"):rep(CH_SIZE // 2)),
      V("maxsize+1 bytes", ("m"):rep(CH_SIZE // 2 + 1)), V("7", 7) },
    msglist = { tbl('{"hello"}', { "hello" }), tbl('{"a","b","c"}', { "a", "b", "c" }),
      tbl("{maxsize+1 bytes}", { ("m"):rep(CH_SIZE // 2 + 1) }), tbl('{7,"x"}', { 7, "x" }),
      tbl('{"a",{}}', { "a", {} }), tbl("{false}", { false }),
      Mk("300 messages", function() local t = {} for i = 1, 300 do t[i] = "m" end return t end),
      Mk("300 messages, #299 bad", function()
        local t = {} for i = 1, 300 do t[i] = "m" end t[299] = true return t end) },
    max = { V("1", 1), V("2", 2), V("2^62", 1 << 62), V("2.0", 2.0) },
    into = { tbl('{"old","old","old"}', { "old", "old", "old" }), tbl("{x=1}", { x = 1 }) },
    choff = { V("64", 64), V("1024", 1024), V("size-1024", SIZE - 1024), V("3", 3), V("128", 128) },
    chsize = { V("1024", 1024), V("2048", 2048), V("1023", 1023), V("320", 320) },
  }

  -- with's fns that lock or unlock mA themselves
  local FN_TOUCHES_MA = {}
  for _, e in ipairs(EXTRA.fn) do
    if e.name:match("mA") then FN_TOUCHES_MA[e.v] = true end
  end

  local lists = {}
  local function values(kind, optional)
    local key = kind .. (optional and "?" or "")
    if lists[key] then return lists[key] end
    local l = {}
    for _, v in ipairs(GENERIC) do l[#l + 1] = v end
    for _, v in ipairs(EXTRA[kind] or {}) do l[#l + 1] = v end
    if optional then l[#l + 1] = { name = "<none>", none = true } end
    local seen = {}
    for _, v in ipairs(l) do
      assert(not seen[v.name], "duplicate value name " .. v.name .. " for " .. kind)
      seen[v.name] = true
    end
    lists[key] = l
    return l
  end

  local function resolve(e)
    if e.get then return e.get() end
    if e.make then return e.make() end
    return e.v
  end

  -- ---- argument classes: a value that can never be valid must raise --------

  local function intval(v)
    if math.type(v) == "integer" then return v end
    if type(v) == "number" then return math.tointeger(v) end
    return nil
  end

  local CLASS = {
    int = function(v) return intval(v) ~= nil end,
    num = function(v) return type(v) == "number" end,
    str = function(v) return type(v) == "string" end,
    strnum = function(v) return type(v) == "string" or type(v) == "number" end,
    table = function(v) return type(v) == "table" end,
    fn = function(v) return type(v) == "function" end,
    seg = function(v) return shm.type(v) ~= nil end,
    aseg = function(v) return F.attached[v] == true end,
    wseg = function(v) return F.attached[v] == true and not v:readonly() end,
    mutex = function(v) return v == F.mA or v == F.mM end,
    chan = function(v) return v == F.chA or v == F.chM end,
    any = function() return true end,
  }

  -- ---- the targets ------------------------------------------------------------

  -- Each: call(args...) makes the call; pos: {kind, class, optional?} per
  -- argument; base: baselines (value names per position, "S" standing for
  -- each segment state); range(a, r): the segment ("X"/"Y") and [lo, hi)
  -- a successful call may write; check(a, r): nil or what is wrong with
  -- the results; block(a): whether the call could block for ever;
  -- creates: integer results are new segments to remove.
  local T = {}

  local function P(kind, class, optional) return { kind = kind, class = class, optional = optional } end

  local function segkey(x) return F.segof[x] end

  local function pristine_of(x) return F.pristine[segkey(x)] end

  local function foreign(id)
    local n = intval(id)
    return n ~= nil and n >= 0 and n <= INT_MAX and not ours[n]
  end
  local function unsafe_id(a) return not private and foreign(a[1]) end

  -- module functions
  T.ftok = { call = shm.ftok, pos = { P("path", "strnum"), P("proj", "any", true) },
    base = { { '"/tmp"', '"A"' } } }
  T.create = { call = shm.create, creates = true,
    pos = { P("key", "int"), P("size", "int"), P("copts", "table", true) },
    base = { { "IPC_PRIVATE", "64", "<none>" } } }
  T.open = { call = shm.open, pos = { P("key", "int") } }
  T.attach = { call = shm.attach, unsafe = unsafe_id,
    pos = { P("id", "int"), P("aopts", "table", true) }, base = { { "id(X)", "<none>" } } }
  T.stat = { call = shm.stat, pos = { P("id", "int") },
    check = function(a, r)
      if r[2] and intval(a[1]) == F.xid and r[2].size ~= SIZE then return "stat(X).size" end
    end }
  T.remove = { call = shm.remove, unsafe = unsafe_id, pos = { P("id", "int") } }
  T.shmget = { call = shm.shmget, creates = true,
    pos = { P("key", "int"), P("size", "int"), P("flags", "int") },
    base = { { "IPC_PRIVATE", "64", "IPC_CREAT|0600" } } }
  T.shmat = { call = shm.shmat, unsafe = unsafe_id,
    pos = { P("id", "int"), P("flags", "int", true) }, base = { { "id(X)", "<none>" } } }
  T.shmdt = { call = shm.shmdt, pos = { P("seg", "seg") } }
  T.shmctl = { call = shm.shmctl, unsafe = unsafe_id,
    pos = { P("id", "int"), P("cmd", "int"), P("ctl", "any", true) },
    base = { { "id(X)", "IPC_STAT", "<none>" }, { "id(X)", "IPC_SET", "{mode=0600}" } } }
  T.sleep = { call = shm.sleep, pos = { P("seconds", "num") },
    block = function(a)
      local t = a[1]
      return type(t) == "number" and t > 0.01 and t <= 2 ^ 31
    end }
  T.clock = { call = shm.clock, pos = { P("any", "any", true) },
    check = function(_, r) if math.type(r[2]) ~= "float" then return "clock() not a float" end end }
  T.type = { call = shm.type, pos = { P("seg", "any", true) },
    check = function(a, r)
      if a.n == 0 then return "type() without an argument returned" end
      local want = (a[1] == F.A or a[1] == F.R or a[1] == F.M) and "segment"
        or a[1] == F.D and "detached segment" or nil
      if r[2] ~= want then return ("type gave %s"):format(tostring(r[2])) end
    end }
  T.list = { call = shm.list, pos = { P("any", "any", true) },
    check = function(_, r)
      if type(r[2]) ~= "table" then return "list() not a table" end
      local seen = false
      for _, s in ipairs(r[2]) do seen = seen or s.id == F.xid end
      if not seen then return "list() does not show the fixture segment" end
    end }
  T.mutex = { call = shm.mutex,
    pos = { P("seg", "wseg"), P("off", "int"), P("mopts", "table", true) },
    base = { { "S", "64", "<none>" } },
    range = function(a)
      local o = a[3]
      if type(o) == "table" and o.open then return nil end
      return segkey(a[1]), intval(a[2]), intval(a[2]) + MSIZE
    end }

  -- segment methods
  local function smethod(name, extra) -- methods are looked up on the segment metatable
    local f = getmetatable(F.A).__index[name]
    local t = { call = f }
    for k, v in pairs(extra) do t[k] = v end
    return t
  end

  T.size = smethod("size", { pos = { P("seg", "aseg") },
    check = function(_, r) if r[2] ~= SIZE then return "size " .. tostring(r[2]) end end })
  T.id = smethod("id", { pos = { P("seg", "aseg") },
    check = function(a, r)
      local want = segkey(a[1]) == "X" and F.xid or F.yid
      if r[2] ~= want then return "id " .. tostring(r[2]) end
    end })
  T.readonly = smethod("readonly", { pos = { P("seg", "aseg") },
    check = function(a, r) if r[2] ~= (a[1] == F.R) then return "readonly " .. tostring(r[2]) end end })
  T.read = smethod("read", { pos = { P("seg", "aseg"), P("off", "int"), P("len", "int", true) },
    base = { { "S", "64", "8" } },
    check = function(a, r)
      local off, len = intval(a[2]), a.n >= 3 and intval(a[3]) or nil
      local want = pristine_of(a[1]):sub(off + 1, len and off + len or SIZE)
      if r[2] ~= want then return "read returned other bytes" end
    end })
  T.write = smethod("write", { pos = { P("seg", "wseg"), P("off", "int"), P("str", "str") },
    base = { { "S", "64", '"abc"' } },
    range = function(a) return segkey(a[1]), intval(a[2]), intval(a[2]) + #a[3] end,
    check = function(a, r)
      if r[2] ~= intval(a[2]) + #a[3] then return "write returned " .. tostring(r[2]) end
      local mon = segkey(a[1]) == "X" and F.monX or F.monY
      if mon:read(intval(a[2]), #a[3]) ~= a[3] then return "write wrote other bytes" end
    end })
  T.byte = smethod("byte", { pos = { P("seg", "aseg"), P("off", "int") },
    check = function(a, r)
      if r[2] ~= pristine_of(a[1]):byte(intval(a[2]) + 1) then return "byte " .. tostring(r[2]) end
    end })
  T.setbyte = smethod("setbyte", { pos = { P("seg", "wseg"), P("off", "int"), P("byte", "any") },
    base = { { "S", "64", "65" } },
    range = function(a) return segkey(a[1]), intval(a[2]), intval(a[2]) + 1 end })
  T.cstring = smethod("cstring", { pos = { P("seg", "aseg"), P("off", "int", true) },
    check = function(a, r)
      local off = a.n >= 2 and a[2] ~= nil and intval(a[2]) or 0
      local want = pristine_of(a[1]):sub(off + 1):match("^[^%z]*")
      if r[2] ~= want then return "cstring returned other bytes" end
    end })
  T.fill = smethod("fill", { pos = { P("seg", "wseg"), P("byte", "any"), P("off", "int", true),
      P("len", "int", true) },
    base = { { "S", "65", "64", "8" } },
    range = function(a)
      local off = a.n >= 3 and a[3] ~= nil and intval(a[3]) or 0
      local len = a.n >= 4 and a[4] ~= nil and intval(a[4]) or SIZE - off
      return segkey(a[1]), off, off + len
    end })
  T.detach = smethod("detach", { pos = { P("seg", "seg") } })
  local segmt = getmetatable(F.A)
  T.__len = { call = segmt.__len, pos = { P("seg", "aseg") } }
  T.__tostring = { call = segmt.__tostring, pos = { P("seg", "seg") } }
  T.__gc = { call = segmt.__gc, pos = { P("seg", "seg") } }
  T.__close = { call = segmt.__close, pos = { P("seg", "seg"), P("any", "any", true) } }

  T.pack = smethod("pack", {
    pos = { P("seg", "wseg"), P("fmt", "strnum"), P("off", "int"), P("any", "any", true),
      P("any", "any", true) },
    base = { { "S", '"i4"', "64", "12345", "<none>" }, { "S", '"j j j j"', "64", "1", "-1" } },
    range = function(a, r) return segkey(a[1]), intval(a[3]), r[2] end,
    check = function(a, r)
      if math.type(r[2]) ~= "integer" or r[2] < intval(a[3]) or r[2] > SIZE then
        return "pack returned " .. tostring(r[2])
      end
    end })
  T.unpack = smethod("unpack", { pos = { P("seg", "aseg"), P("fmt", "strnum"), P("off", "int") },
    base = { { "S", '"i4"', "64" } },
    check = function(a, r)
      local last = r[r.n]
      if math.type(last) ~= "integer" or last < intval(a[3]) or last > SIZE + 1 then
        return "unpack's next offset " .. tostring(last)
      end
    end })

  local function word_at(x, off, fmt) return (string.unpack(fmt, pristine_of(x), off + 1)) end
  local function word_now(x, off, fmt)
    local mon = segkey(x) == "X" and F.monX or F.monY
    return (string.unpack(fmt, mon:read(off, string.packsize(fmt)), 1))
  end

  -- In a sequence the fixtures are not restored between calls: a mutex may
  -- be held or its bytes overwritten, a channel empty or full.  Calls that
  -- could then wait for ever are skipped: lock, send and recv without a
  -- short timeout, and with (which has none) unless the mutex bytes are
  -- those of a free mutex.
  local SEQ = false
  local function long(a, i)
    local t = a[i]
    return a.n < i or t == nil or (type(t) == "number" and t == t and t > 0.05)
  end
  local function mutex_free(m)
    local s = segkey(m)
    if not s then return true end -- not a fixture: raises
    local mon = s == "X" and F.monX or F.monY
    return mon:read(MUTEX_OFF, MSIZE) == F.pristine[s]:sub(MUTEX_OFF + 1, MUTEX_OFF + MSIZE)
  end

  T.atomic_load = smethod("atomic_load", { pos = { P("seg", "aseg"), P("off", "int") },
    check = function(a, r)
      if r[2] ~= word_at(a[1], intval(a[2]), "=i8") then return "atomic_load " .. tostring(r[2]) end
    end })
  T.atomic_store = smethod("atomic_store", { pos = { P("seg", "wseg"), P("off", "int"), P("int", "int") },
    base = { { "S", "64", "1" } },
    range = function(a) return segkey(a[1]), intval(a[2]), intval(a[2]) + 8 end })
  T.atomic_add = smethod("atomic_add", { pos = { P("seg", "wseg"), P("off", "int"), P("int", "int") },
    base = { { "S", "64", "1" } },
    range = function(a) return segkey(a[1]), intval(a[2]), intval(a[2]) + 8 end,
    check = function(a, r)
      if r[2] ~= word_at(a[1], intval(a[2]), "=i8") then return "atomic_add returned " .. tostring(r[2]) end
    end })
  T.atomic_cas = smethod("atomic_cas", { pos = { P("seg", "wseg"), P("off", "int"), P("int", "int"),
      P("int", "int") },
    base = { { "S", "64", "1", "2^62" } },
    range = function(a) return segkey(a[1]), intval(a[2]), intval(a[2]) + 8 end })
  T.wait = smethod("wait", { pos = { P("seg", "aseg"), P("off", "int"), P("int", "int"),
      P("timeout", "num", true) },
    base = { { "S", "64", "0", "0.001" } },
    block = function(a)
      local s, off, e, t = a[1], intval(a[2]), intval(a[3]), a[4]
      if not F.attached[s] or not off or not e or off < 0 or off % 4 ~= 0 or off > SIZE - 4 then
        return false
      end
      if a.n >= 4 and t ~= nil and (type(t) ~= "number" or t ~= t or t <= 0.05) then
        return false -- a short timeout, or one that raises
      end
      return word_now(s, off, "=I4") == e & 0xffffffff
    end })
  T.wake = smethod("wake", { pos = { P("seg", "aseg"), P("off", "int"), P("count", "int", true) },
    base = { { "S", "64", "1" } },
    check = function(_, r) if r[2] ~= 0 then return "wake woke " .. tostring(r[2]) end end })

  -- mutex methods
  local mutexmt = getmetatable(F.mA)
  local mrange = function(a) return segkey(a[1]), MUTEX_OFF, MUTEX_OFF + MSIZE end
  T.lock = { call = mutexmt.__index.lock, pos = { P("mutex", "mutex"), P("timeout", "num", true) },
    base = { { "mA", "0.001" } }, range = mrange,
    block = function(a) return SEQ and long(a, 2) end }
  T.trylock = { call = mutexmt.__index.trylock, pos = { P("mutex", "mutex") }, range = mrange }
  T.unlock = { call = mutexmt.__index.unlock, pos = { P("mutex", "mutex") }, range = mrange }
  T.with = { call = mutexmt.__index.with,
    pos = { P("mutex", "mutex"), P("fn", "fn"), P("any", "any", true) },
    base = { { "mA", "function", "1" }, { "mM", "function", "1" } },
    -- fn may lock or unlock mA as well; with locks and unlocks even when
    -- fn raises
    range = function(a)
      local s, lo, hi = mrange(a)
      if a[2] ~= nil and FN_TOUCHES_MA[a[2]] then
        return s, lo, hi, "X", MUTEX_OFF, MUTEX_OFF + MSIZE
      end
      return s, lo, hi
    end,
    range_on_error = true,
    block = function(a) return SEQ and not mutex_free(a[1]) end,
    after = function(a)
      -- m:with(fn) where fn unlocks m: see the with-unlock probe in
      -- spec/mutex_spec.lua; the handle's segment is left inconsistent.
      if a[2] ~= nil and FN_TOUCHES_MA[a[2]] then dirty = true end
    end }
  T.locked = { call = mutexmt.__index.locked, pos = { P("mutex", "any") } }
  T["mutex.__gc"] = { call = mutexmt.__gc, pos = { P("mutex", "any") }, range = mrange }
  T["mutex.__tostring"] = { call = mutexmt.__tostring, pos = { P("mutex", "any") } }

  -- channel
  local chmt = getmetatable(F.chA)
  local chrange = function(a) return segkey(a[1]), CH_OFF, CH_OFF + CH_SIZE end
  T["channel.new"] = { call = channel.new,
    pos = { P("seg", "wseg"), P("choff", "int", true), P("chsize", "int", true) },
    base = { { "S", "1024", "1024" } },
    range = function(a)
      local off = a.n >= 2 and a[2] ~= nil and intval(a[2]) or 0
      local size = a.n >= 3 and a[3] ~= nil and intval(a[3]) or SIZE - off
      return segkey(a[1]), off, off + size
    end }
  T["channel.open"] = { call = channel.open, pos = { P("seg", "wseg"), P("choff", "int", true) },
    base = { { "S", "1024" } } }
  T.send = { call = chmt.__index.send, pos = { P("chan", "chan"), P("msg", "strnum"),
      P("timeout", "num", true) },
    base = { { "chA", '"hello"', "0" }, { "chM", '"hello"', "0" } }, range = chrange,
    block = function(a) return SEQ and long(a, 3) end }
  T.recv = { call = chmt.__index.recv, pos = { P("chan", "chan"), P("timeout", "num", true) },
    base = { { "chA", "0" } }, range = chrange,
    block = function(a) return SEQ and long(a, 2) end,
    check = function(_, r) if r[2] ~= "hello" then return "recv gave " .. tostring(r[2]) end end }
  -- sendpack's timeout follows the values its format takes, so where it is
  -- depends on the format: in a sequence (the channel may be full) it is
  -- skipped as a call that could wait for ever.
  local function sent(_, r)
    if not (r[2] == true or r[2] == false and (r[3] == "timeout" or r[3] == "closed")) then
      return "sendpack gave " .. tostring(r[2]) .. " " .. tostring(r[3])
    end
  end
  -- a receive that returned nil: the reason must be "timeout" or "closed"
  local function no_message(name, r)
    if r[3] ~= "timeout" and r[3] ~= "closed" then return name .. " gave nil " .. tostring(r[3]) end
  end
  T.sendpack = { call = chmt.__index.sendpack,
    pos = { P("chan", "chan"), P("fmt", "strnum"), P("any", "any", true), P("any", "any", true) },
    base = { { "chA", '"i4"', "12345", "<none>" }, { "chM", '"z"', '"str"', "<none>" } },
    range = chrange, block = function() return SEQ end, check = sent }
  T.recvunpack = { call = chmt.__index.recvunpack,
    pos = { P("chan", "chan"), P("fmt", "strnum"), P("timeout", "num", true) },
    base = { { "chA", '"i4"', "0" }, { "chM", '"z"', "0" } }, range = chrange,
    range_on_error = true, -- a message that does not match the format is consumed, then it raises
    block = function(a) return SEQ and long(a, 3) end,
    check = function(_, r)
      if r[2] == nil then return no_message("recvunpack", r) end
      local last = r[r.n] -- the fixture message is "hello": at most 5 bytes read
      if math.type(last) ~= "integer" or last < 1 or last > 6 then
        return "recvunpack's next position " .. tostring(last)
      end
    end }
  T.send_many = { call = chmt.__index.send_many,
    pos = { P("chan", "chan"), P("msglist", "table"), P("timeout", "num", true) },
    base = { { "chA", '{"hello"}', "0" }, { "chM", '{"a","b","c"}', "0" } }, range = chrange,
    -- 300 messages do not fit in the fixture's ring: without a timeout,
    -- that call would wait for ever even on the fresh fixture
    block = function(a)
      return long(a, 3) and (SEQ or a.n >= 2 and type(a[2]) == "table" and #a[2] > 50)
    end,
    check = function(a, r)
      local n = a.n >= 2 and type(a[2]) == "table" and #a[2] or -1
      if math.type(r[2]) ~= "integer" or r[2] < 0 or r[2] > n
        or not (r[3] == nil and r[2] == n or r[3] == "timeout" or r[3] == "closed") then
        return "send_many gave " .. tostring(r[2]) .. " " .. tostring(r[3])
      end
    end }
  T.recv_many = { call = chmt.__index.recv_many,
    pos = { P("chan", "chan"), P("max", "int"), P("timeout", "num", true), P("into", "table", true) },
    base = { { "chA", "1", "0", "<none>" }, { "chM", "2", "0", '{"old","old","old"}' } },
    range = chrange,
    block = function(a) return SEQ and long(a, 3) end,
    check = function(a, r)
      if r[2] == nil then return no_message("recv_many", r) end
      local into = a.n >= 4 and a[4] or nil
      if type(r[2]) ~= "table" or (into ~= nil and r[2] ~= into) or math.type(r[3]) ~= "integer"
        or r[3] < 1 or r[3] > a[2] or #r[2] ~= r[3] or (not SEQ and r[2][1] ~= "hello") then
        return "recv_many gave " .. tostring(r[2]) .. " " .. tostring(r[3])
      end
    end }
  T.close = { call = chmt.__index.close, pos = { P("chan", "chan") }, range = chrange }
  T.closed = { call = chmt.__index.closed, pos = { P("chan", "chan") },
    check = function(_, r) if r[2] ~= false then return "closed " .. tostring(r[2]) end end }
  T.maxsize = { call = chmt.__index.maxsize, pos = { P("chan", "chan") },
    check = function(_, r) if r[2] ~= CH_SIZE // 2 then return "maxsize " .. tostring(r[2]) end end }
  T.pending = { call = chmt.__index.pending, pos = { P("chan", "chan") },
    check = function(_, r) if r[2] ~= 16 then return "pending " .. tostring(r[2]) end end }
  T["channel.__gc"] = { call = chmt.__gc, pos = { P("chan", "any") } }
  T["channel.__tostring"] = { call = chmt.__tostring, pos = { P("chan", "any") } }

  -- layout
  local vrange = function(a) return segkey(a[1]), VIEW_OFF, VIEW_OFF + Rec.size end
  T["L:view"] = { call = function(...) return Rec:view(...) end,
    pos = { P("seg", "any"), P("off", "any", true) }, base = { { "S", "128" } } }
  T["L:read"] = { call = function(...) return Rec:read(...) end,
    pos = { P("seg", "any"), P("off", "any", true), P("field", "any", true) },
    base = { { "S", "128", '"a"' } } }
  T["L:write"] = { call = function(...) return Rec:write(...) end,
    pos = { P("seg", "any"), P("off", "any"), P("rec", "any") },
    base = { { "S", "128", "{a=1}" } },
    range = function(a)
      local off = a[2] == nil and 0 or intval(a[2])
      return segkey(a[1]), off, off + Rec.size
    end }
  T["view[k]"] = { call = function(v, k) return v[k] end,
    pos = { P("view", "any"), P("field", "any") }, base = { { "vA", '"a"' } } }
  T["view[k]=v"] = { call = function(v, k, x) v[k] = x end,
    pos = { P("view", "any"), P("field", "any"), P("fval", "any") },
    base = { { "vA", '"a"', "7" }, { "vM", '"arr"', "{1,2,3,4}" } }, range = vrange }
  local arange = function(a) return segkey(a[1]), VIEW_OFF + 24, VIEW_OFF + 32 end
  T["array[i]"] = { call = function(v, i) return v[i] end,
    pos = { P("array", "any"), P("len", "any") }, base = { { "arrA", "1" } } }
  T["array[i]=v"] = { call = function(v, i, x) v[i] = x end,
    pos = { P("array", "any"), P("len", "any"), P("fval", "any") },
    base = { { "arrA", "1", "7" } }, range = arange }

  -- ---- running ------------------------------------------------------------------

  local function describe_call(name, combo)
    local parts = {}
    for i, e in ipairs(combo) do parts[i] = e.name end
    return name .. "(" .. table.concat(parts, ", ") .. ")"
  end

  local function cleanup_results(t, r, a)
    for i = 2, r.n do
      local v = r[i]
      if shm.type(v) == "segment" and not F.segof[v] then
        pcall(v.detach, v)
      elseif t.creates and i == 2 and math.type(v) == "integer" and not ours[v] then
        local st = shm.stat(v)
        if st and st.cpid == mypid then shm.remove(v) end
      end
    end
    for i = 1, a.n do -- a segment attached by the call and passed back in
      if shm.type(a[i]) == "segment" and not F.segof[a[i]] and a[i] ~= F.guard then
        pcall(a[i].detach, a[i])
      end
    end
  end

  local function compare(segname, lo, hi)
    local mon = segname == "X" and F.monX or F.monY
    local now, was = mon:read(0), F.pristine[segname]
    if now == was then return nil end
    if lo == nil then return "changed segment " .. segname end
    if math.type(lo) ~= "integer" or math.type(hi) ~= "integer" or lo < 0 or hi < lo then
      return ("changed segment %s, bad range %s..%s"):format(segname, tostring(lo), tostring(hi))
    end
    if now:sub(1, lo) ~= was:sub(1, lo) or now:sub(hi + 1) ~= was:sub(hi + 1) then
      local first
      for i = 1, SIZE do
        if (i <= lo or i > hi) and now:byte(i) ~= was:byte(i) then first = i - 1 break end
      end
      return ("changed segment %s at byte %s, outside [%d, %d)"):format(segname, tostring(first), lo, hi)
    end
    return nil
  end

  local covered = {}

  -- The arguments of a call (combo's values, the trailing <none>s left
  -- out); nil, counted as skipped, for a call that could block for ever or
  -- touch a segment the sweep did not create.
  local function arguments(t, combo)
    local n = #combo
    while n > 0 and combo[n].none do n = n - 1 end
    local a = { n = n }
    for i = 1, n do
      if not combo[i].none then a[i] = resolve(combo[i]) end
    end
    if (t.block and t.block(a)) or (t.unsafe and t.unsafe(a)) then
      skipped = skipped + 1
      return nil
    end
    return a
  end

  local function run(tname, t, combo)
    local a = arguments(t, combo)
    if not a then return end
    for i = 1, #combo do covered[tname .. "\0" .. i .. "\0" .. combo[i].name] = true end

    local desc = describe_call(tname, combo)
    progress:seek("set")
    progress:write(desc, "\n")
    progress:flush()

    -- arguments that can never be valid
    local invalid
    for i = 1, #t.pos do
      local p = t.pos[i]
      local v = a[i]
      if not (p.optional and v == nil) and not CLASS[p.class](v) then
        invalid = invalid or i
      end
    end

    calls = calls + 1
    local r = table.pack(pcall(t.call, table.unpack(a, 1, a.n)))
    local ok = r[1]

    if ok and invalid then
      fail(("%s: returned (%s) instead of raising for argument #%d"):format(desc,
        tostring(r[2]), invalid))
    end
    if not ok and type(r[2]) ~= "string" and not (t == T.with and type(r[2]) == "table") then
      fail(("%s: raised a %s, not a message"):format(desc, type(r[2])))
    end

    -- a refusal (nil, message[, errno]) writes nothing either
    local refused = ok and r[2] == nil and type(r[3]) == "string"
    local ranges = {}
    if t.range and ((ok and not refused) or (not ok and t.range_on_error)) then
      local rr = table.pack(t.range(a, r))
      for i = 1, rr.n, 3 do
        if rr[i] then ranges[rr[i]] = { rr[i + 1], rr[i + 2] } end
      end
    end
    for _, s in ipairs { "X", "Y" } do
      local lo, hi = table.unpack(ranges[s] or {})
      local bad = compare(s, lo, hi)
      if bad then fail(desc .. ": " .. bad .. (ok and "" or " (the call raised: " .. tostring(r[2]) .. ")")) end
    end

    if ok and t.check and not refused then
      local bad = t.check(a, r)
      if bad then fail(desc .. ": " .. bad) end
    end

    if t.after then t.after(a, r) end
    cleanup_results(t, r, a)
    settle()
  end

  local function combos(tname, t)
    local L = {}
    local total = 1
    for i, p in ipairs(t.pos) do
      L[i] = values(p.kind, p.optional or i == #t.pos)
      total = total * #L[i]
    end
    local byname = {}
    for i = 1, #L do
      byname[i] = {}
      for _, e in ipairs(L[i]) do byname[i][e.name] = e end
    end

    if total <= FULL then
      local idx = {}
      for i = 1, #L do idx[i] = 1 end
      while true do
        local c = {}
        for i = 1, #L do c[i] = L[i][idx[i]] end
        run(tname, t, c)
        local i = #L
        while i >= 1 do
          idx[i] = idx[i] + 1
          if idx[i] <= #L[i] then break end
          idx[i] = 1
          i = i - 1
        end
        if i < 1 then break end
      end
      return
    end

    -- every value at every position around each baseline, then a sample
    local bases = {}
    for _, b in ipairs(t.base or { {} }) do
      if b[1] == "S" then
        for _, s in ipairs { "A", "R", "D", "M" } do
          local c = { s }
          for i = 2, #b do c[i] = b[i] end
          bases[#bases + 1] = c
        end
      else
        bases[#bases + 1] = b
      end
    end
    for _, b in ipairs(bases) do
      local base = {}
      for i = 1, #L do
        base[i] = byname[i][b[i] or "<none>"] or byname[i]["0"]
        assert(base[i], tname .. ": no baseline value " .. tostring(b[i]) .. " at " .. i)
      end
      for i = 1, #L do
        for _, e in ipairs(L[i]) do
          local c = table.move(base, 1, #base, 1, {})
          c[i] = e
          run(tname, t, c)
        end
      end
    end
    local seed = 0
    for i = 1, #tname do seed = (seed * 31 + tname:byte(i)) % 2147483647 end
    math.randomseed(seed)
    for _ = 1, SAMPLE do
      local c = {}
      for i = 1, #L do c[i] = L[i][math.random(#L[i])] end
      run(tname, t, c)
    end
  end

  -- Random sequences: fixtures built afresh for each, then LEN calls of
  -- random targets with random values, none undone.  Checked: the process
  -- survives, errors are messages, the guard segment never changes.
  local function sequences()
    SEQ = true
    local names = {}
    for _, c in ipairs(CHUNKS) do
      for _, n in ipairs(c.targets or {}) do
        if n ~= "sleep" then names[#names + 1] = n end
      end
    end
    local NSEQ, LEN = math.max(100, math.floor(3000 * scale)), 30
    math.randomseed(20240611)
    for _ = 1, NSEQ do
      build()
      local trail = {}
      for _ = 1, LEN do
        local tname = names[math.random(#names)]
        local t = T[tname]
        local combo = {}
        for i, p in ipairs(t.pos) do
          local l = values(p.kind, p.optional or i == #t.pos)
          combo[i] = l[math.random(#l)]
        end
        local a = arguments(t, combo)
        if a then
          trail[#trail + 1] = describe_call(tname, combo)
          progress:seek("set")
          progress:write(table.concat(trail, "; "), "\n")
          progress:flush()
          calls = calls + 1
          local r = table.pack(pcall(t.call, table.unpack(a, 1, a.n)))
          if not r[1] and type(r[2]) ~= "string" and not (t == T.with and type(r[2]) == "table") then
            fail(("%s: raised a %s, not a message"):format(table.concat(trail, "; "), type(r[2])))
          end
          cleanup_results(t, r, a)
        end
      end
      if F.guard:read(0) ~= F.guardbytes then fail(table.concat(trail, "; ") .. ": the guard segment changed") end
    end
    SEQ = false
    build()
    print(("target sequences calls=%d"):format(calls))
  end

  -- ---- main ---------------------------------------------------------------------

  local chunk
  for _, c in ipairs(CHUNKS) do
    if c.name == chunkname then chunk = c end
  end
  assert(chunk, "no chunk " .. tostring(chunkname))

  if chunk.sequences then sequences() end

  for _, tname in ipairs(chunk.targets or {}) do
    local t = assert(T[tname], "no target " .. tname)
    local before = calls
    local done = false
    local co = coroutine.wrap(function() combos(tname, t) done = true end)
    co()
    if not done then fail(tname .. ": a call yielded out of the sweep") end
    -- positions where some value was never tried (all its calls skipped)
    local missing = {}
    for i, p in ipairs(t.pos) do
      for _, e in ipairs(values(p.kind, p.optional or i == #t.pos)) do
        if not covered[tname .. "\0" .. i .. "\0" .. e.name] then
          missing[#missing + 1] = ("#%d=%s"):format(i, e.name)
        end
      end
    end
    print(("target %s calls=%d%s"):format(tname, calls - before,
      #missing > 0 and (" uncovered=" .. table.concat(missing, ",")) or ""))
    if F.guard:read(0) ~= F.guardbytes then fail(tname .. ": the guard segment changed") end
    collectgarbage()
  end

  print(("total calls=%d skipped=%d rebuilds=%d"):format(calls, skipped, rebuilds))
  teardown()
  F.guard:detach()
  shm.remove(F.gid)
  progress:close()
  if #failures > 0 then
    for _, f in ipairs(failures) do print("FAIL " .. f) end
    os.exit(1)
  end
  os.exit(0)
end

-- Run as a script (lua5.4 spec/support/sweep.lua CHUNK MODE PROGRESS): the
-- child.  Required (by a spec): the functions below.
if arg and arg[0] and arg[0]:match("support/sweep%.lua$") then
  return child(...)
end

-- ===========================================================================
-- For the specs
-- ===========================================================================

local M = {}

local h = require "helpers"
local shm = h.shm

-- busted's functions: a module a spec requires sees the global
-- environment, not the spec's, where busted puts them
local busted = require "busted"
local describe, it, after_each, teardown = busted.describe, busted.it, busted.after_each, busted.teardown
local assert = busted.assert

local scale = tonumber(os.getenv("SYSVSHM_STRESS_SCALE") or "") or 1
local LIMIT = scale < 1 and 900 or 120 -- seconds a child may run

-- Run a command (after h.lua_env()) in a shell of its own, so that the
-- "Segmentation fault" of a child that crashes goes to that shell's stderr
-- and not to busted's output.
local function quiet(cmd)
  return h.sh("sh -c " .. h.quote(h.lua_env() .. cmd .. " 2>&3") .. " 3>&2 2>/dev/null")
end

--- Check a bug the sweep found: `bug.probe`, a chunk that prints "ok"
-- when the bug is not there, runs in a child process and must print
-- "ok"; a failure shows the bug (`bug.what`), what the probe printed and
-- the probe itself (the reproducing input).
function M.probe(bug)
  local file = h.tmpfile()
  local f = assert(io.open(file, "w"))
  f:write(bug.probe)
  f:close()
  -- a probe may crash: it runs the plain build (make's) and not under
  -- tools/check.sh's sanitizer or valgrind wrappers (their logs would
  -- report the crash a second time, apart from this test)
  local r = quiet("env SYSVSHM_NO_WRAP=1 LUA_CPATH_5_4=" .. h.quote(h.root .. "/build/?.so;;")
    .. " " .. h.lua .. " " .. h.quote(file))
  assert(r.ok and r.stdout == "ok", ("%s\nprobe: %s\nthe probe:\n%s"):format(bug.what, h.explain(r), bug.probe))
end

--- describe("bad-input sweep") with one test for each chunk named (CHUNKS
-- above), each run in a child process; prints how many calls they made.
function M.describe(...)
  local names, chunks = { ... }, {}
  for i, name in ipairs(names) do
    for _, c in ipairs(CHUNKS) do
      if c.name == name then chunks[i] = c end
    end
    assert(chunks[i], "no sweep chunk " .. tostring(name))
  end

  describe("bad-input sweep", function()
    local total, skipped, uncovered = 0, 0, {}
    local private = h.sh("unshare --ipc true").ok
    local mode = private and "private" or "shared"

    after_each(h.cleanup)

    teardown(function()
      print(("\nsweep (%s): %d calls (%d skipped as blocking%s), %s IPC namespace"):format(
        table.concat(names, ", "), total, skipped,
        private and "" or " or touching foreign segments", private and "private" or "shared"))
      for _, u in ipairs(uncovered) do print("sweep: never tried: " .. u) end
    end)

    for _, chunk in ipairs(chunks) do
      it(("%s: %s"):format(chunk.name, chunk.targets
        and (table.concat(chunk.targets, " ") .. ": every call returns or raises, touches only its own range")
        or "random call sequences never crash"), function()
        local progress = h.tmpfile()
        local cmd = "timeout -s KILL " .. LIMIT .. " "
          .. (private and "unshare --ipc " or "") .. h.lua .. " spec/support/sweep.lua "
          .. chunk.name .. " " .. mode .. " " .. h.quote(progress)
        local r = quiet(cmd)
        local pidf = io.open(progress .. ".pid")
        local pid = pidf and math.tointeger(tonumber(pidf:read("l")))
        if pidf then pidf:close() os.remove(progress .. ".pid") end
        if not r.ok and not private and pid then -- remove what a dead child left
          for _, s in ipairs(shm.list() or {}) do
            if s.cpid == pid then shm.remove(s.id) end
          end
        end
        local f = io.open(progress)
        local last = f and f:read("l") or "?"
        if f then f:close() end
        for n, u in r.stdout:gmatch("target (%S+) calls=%d+ uncovered=(%S+)") do
          uncovered[#uncovered + 1] = n .. " " .. u
        end
        local calls, skip = r.stdout:match("total calls=(%d+) skipped=(%d+)")
        if calls then
          total = total + tonumber(calls)
          skipped = skipped + tonumber(skip)
        end
        if r.how == "signal" or (r.code ~= 0 and not calls) then
          error(("the child died (%s %s) in the call %s\nstdout: %s\nstderr: %s"):format(
            tostring(r.how), tostring(r.code), last, r.stdout:sub(-2000), r.stderr:sub(-4000)), 0)
        end
        local fails = {}
        for line in r.stdout:gmatch("FAIL ([^\n]*)") do fails[#fails + 1] = line end
        assert.same({}, fails)
        assert.is_true(r.ok, h.explain(r))
        assert.is_not_nil(calls)
      end)
    end
  end)
end

return M
