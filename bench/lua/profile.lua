--- The loop bodies of the benchmark, one at a time, for counting
-- instructions with callgrind (bench/profile.sh):
--
--     plua profile.lua OP N
--
-- runs N iterations of OP after the same setup as bench.lua. Instruction
-- counts are repeatable on a noisy machine where times are not; the cost of
-- one iteration is (Ir with N) - (Ir with 0), divided by N.
local shm = require "sysvshm"
local channel = require "sysvshm.channel"

local SMALL = 1048576
local STEP = 7919
local MSG = 64
local PAD = ("p"):rep(MSG - 8)

local op, n = arg[1], math.tointeger(tonumber(arg[2]))

local id = assert(shm.create(shm.IPC_PRIVATE, SMALL))
local seg = assert(shm.attach(id))
assert(shm.remove(id))
local s = ("\7"):rep(SMALL)

local OPS = {}

function OPS.loop()
  local off = 0
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
  end
end

function OPS.read8()
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
    x = seg:read(off, 8)
  end
  return x
end

-- the same, without the method lookup
function OPS.read8_local()
  local read = seg.read
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
    x = read(seg, off, 8)
  end
  return x
end

function OPS.sub8()
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
    x = s:sub(off + 1, off + 8)
  end
  return x
end

function OPS.write8()
  local off = 0
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
    seg:write(off, "ABCDEFGH")
  end
end

function OPS.byte()
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % SMALL
    x = seg:byte(off)
  end
  return x
end

function OPS.sbyte()
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % SMALL
    x = s:byte(off + 1)
  end
  return x
end

function OPS.setbyte()
  local off = 0
  for i = 0, n - 1 do
    off = (off + STEP) % SMALL
    seg:setbyte(off, i & 255)
  end
end

function OPS.unpack()
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
    x = seg:unpack("<i8", off)
  end
  return x
end

function OPS.sunpack()
  local off, x = 0, nil
  for _ = 1, n do
    off = (off + STEP) % (SMALL - 8)
    x = string.unpack("<i8", s, off + 1)
  end
  return x
end

function OPS.pack()
  local off = 0
  for i = 0, n - 1 do
    off = (off + STEP) % (SMALL - 8)
    seg:pack("<i8", off, i)
  end
end

function OPS.spack()
  local off, x = 0, nil
  for i = 0, n - 1 do
    off = (off + STEP) % (SMALL - 8)
    x = string.pack("<i8", i)
  end
  return x
end

function OPS.atomic_add()
  local off = 0
  for _ = 1, n do
    off = (off + 8 * STEP) % SMALL
    seg:atomic_add(off, 1)
  end
end

function OPS.atomic_load()
  local x
  for _ = 1, n do
    x = seg:atomic_load(64)
  end
  return x
end

function OPS.atomic_store()
  for i = 1, n do
    seg:atomic_store(64, i)
  end
end

-- the lock row: an uncontended lock and unlock of a mutex
function OPS.lock()
  local m = shm.mutex(seg, 4096)
  m:lock() -- the first lock notes this thread's identity: not counted
  m:unlock()
  for _ = 1, n do
    m:lock()
    m:unlock()
  end
end

-- its floor: two Lua C calls on the segment
function OPS.atomic_add2()
  for _ = 1, n do
    seg:atomic_add(64, 1)
    seg:atomic_add(64, 1)
  end
end

-- W5's cycle (the system calls themselves are not counted by callgrind)
function OPS.cycle()
  for _ = 1, n do
    local i = shm.create(shm.IPC_PRIVATE, 4096)
    local g = shm.attach(i)
    g:detach()
    shm.remove(i)
  end
end

-- one message of W6, writer side, with no waiting (as when both keep up)
function OPS.w6writer()
  for i = 0, n - 1 do
    seg:pack("<I8c56", 256 + i % 256 * MSG, i, PAD)
    seg:atomic_store(64, i + 1)
    if seg:atomic_load(192) ~= 0 and seg:atomic_cas(192, 1, 0) then
      seg:wake(192)
    end
  end
end

-- one message of W6, reader side
function OPS.w6reader()
  local bad = 0
  for i = 0, n - 1 do
    local seq, pad = seg:unpack("<I8c56", 256 + i % 256 * MSG)
    seg:atomic_store(0, i + 1)
    if seg:atomic_load(128) ~= 0 and seg:atomic_cas(128, 1, 0) then
      seg:wake(128)
    end
    if seq ~= i or pad ~= PAD then
      bad = bad + 1
    end
  end
  return bad
end

-- one message of W7 through a channel, sent and received in one process
function OPS.channel()
  local ch = channel.new(seg, 0, channel.HEADER + 256 * (8 + MSG))
  local spack, sunpack = string.pack, string.unpack
  local bad = 0
  for i = 0, n - 1 do
    ch:send(spack("<I8", i) .. PAD)
    local m = ch:recv()
    if sunpack("<I8", m) ~= i or m:sub(9) ~= PAD then
      bad = bad + 1
    end
  end
  return bad
end

-- the same message through ch:sendpack and ch:recvunpack: no Lua string
-- for the whole message on either side (the 56-byte pad is still one)
function OPS.chanpack()
  local ch = channel.new(seg, 0, channel.HEADER + 256 * (8 + MSG))
  local bad = 0
  for i = 0, n - 1 do
    ch:sendpack("<I8c56", i, PAD)
    local seq, pad = ch:recvunpack("<I8c56")
    if seq ~= i or pad ~= PAD then
      bad = bad + 1
    end
  end
  return bad
end

-- W7 batch's loops, both sides in one process: lists of 64 pooled
-- messages through ch:send_many, ch:recv_many into a reused table, each
-- message compared with the one sent (n a multiple of 64)
local function bpool()
  local t = {}
  for i = 0, 4095 do
    t[i + 1] = string.pack("<I8c56", i, PAD)
  end
  return t
end

function OPS.chanbatch()
  local ch = channel.new(seg, 0, channel.HEADER + 256 * (8 + MSG))
  local msgs, list, into, bad = bpool(), {}, {}, 0
  for b = 0, n // 64 - 1 do
    for j = 1, 64 do
      list[j] = msgs[(b * 64 + j - 1) % 4096 + 1]
    end
    ch:send_many(list)
    local l, k = ch:recv_many(64, nil, into)
    for j = 1, k do
      if l[j] ~= msgs[(b * 64 + j - 1) % 4096 + 1] then
        bad = bad + 1
      end
    end
  end
  return bad
end

-- the channel's message building alone (string.pack .. PAD)
function OPS.msgbuild()
  local spack, x = string.pack, nil
  for i = 0, n - 1 do
    x = spack("<I8", i) .. PAD
  end
  return x
end

-- W9: the shared dictionary's loops (1000 keys of 16 bytes, 64-byte
-- values, the keys cycled as bench.lua's W9 does), in a 4 MiB dictionary
-- holding the 1000 keys and counters already (set before the loop)
local function w9dict()
  local dict = require "sysvshm.dict"
  local d = dict.new(seg, 0, SMALL)
  local keys, cnts, vals = {}, {}, {}
  for i = 1, 1000 do
    keys[i] = ("key:%012d"):format(i)
    cnts[i] = ("cnt:%012d"):format(i)
    vals[i] = ("v%015d"):format(i) .. ("x"):rep(48)
    assert(d:set(keys[i], vals[i]))
    assert(d:set(cnts[i], 0))
  end
  return d, keys, cnts, vals
end

function OPS.dget()
  local d, keys = w9dict()
  local x
  for i = 0, n - 1 do
    x = d:get(keys[i % 1000 + 1])
  end
  return x
end

function OPS.dset()
  local d, keys, _, vals = w9dict()
  for i = 0, n - 1 do
    local j = i % 1000 + 1
    d:set(keys[j], vals[j])
  end
end

function OPS.dincr()
  local d, _, cnts = w9dict()
  for i = 0, n - 1 do
    d:incr(cnts[i % 1000 + 1], 1, 0)
  end
end

-- the W9 95/5 loop of one process: every 20th a set, else a get
function OPS.dmixed()
  local d, keys, _, vals = w9dict()
  local found = 0
  for i = 0, n - 1 do
    local j = i % 1000 + 1
    if i % 20 == 0 then
      d:set(keys[j], vals[j])
    elseif d:get(keys[j]) then
      found = found + 1
    end
  end
  return found
end

-- the W9 reference: one string.sub in the same loop shape as dget
function OPS.dsub()
  local _, _, _, vals = w9dict()
  local str = table.concat(vals)
  local x
  for i = 0, n - 1 do
    local j = i % 1000 + 1
    x = str:sub(j, j + 7)
  end
  return x
end

local f = OPS[op]
if not f or not n then
  local names = {}
  for k in pairs(OPS) do
    names[#names + 1] = k
  end
  table.sort(names)
  io.stderr:write("usage: plua profile.lua OP N; OP is one of ", table.concat(names, " "), "\n")
  os.exit(2)
end
f()
