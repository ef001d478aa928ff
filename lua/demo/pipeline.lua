--[[ pipeline.lua: producers and consumers in separate processes, over a
sysvshm.channel in one segment.

    lua5.4 lua/demo/pipeline.lua [--producers N] [--consumers N] [--messages K] [--size B]

The producers share out K messages of B bytes, each carrying its producer
and sequence number; the consumers receive until the channel is closed and
check that every producer's messages arrive in order and intact. The main
process waits for the producers, closes the channel, adds up what the
consumers got (each message exactly once) and prints messages per second.
]]
dofile((arg[0]:match("^(.*)/") or ".") .. "/prelude.lua")

local shm = require "sysvshm"
local channel = require "sysvshm.channel"
local options = require "sysvshm.options"

local HEAD = "<I4 I8" -- producer number, sequence number
local HEADSIZE = string.packsize(HEAD)

local cli = options.new {
  prog = "pipeline.lua",
  description = "Send messages from producer to consumer processes over a channel.",
  { "producers", type = "integer", default = 2, min = 1, max = 32, metavar = "N",
    help = "producer processes" },
  { "consumers", type = "integer", default = 2, min = 1, max = 32, metavar = "N",
    help = "consumer processes" },
  { "messages", type = "integer", default = 200000, min = 0, metavar = "K",
    help = "messages in all" },
  { "size", type = "integer", default = 64, min = HEADSIZE, max = 65536, metavar = "B",
    help = "bytes per message" },
  { "role", metavar = "ROLE", help = "(internal) producer:ID:SEG:N or consumer:SEG" },
}
local opts = cli:parse_or_exit(arg)

-- A producer sends n messages: its number, a sequence, and padding.
local function produce(seg, me, n)
  local ch = channel.open(seg)
  local pad = ("p"):rep(opts.size - HEADSIZE)
  for seq = 1, n do
    assert(ch:send(string.pack(HEAD, me, seq) .. pad))
  end
end

-- A consumer receives until the channel is closed; prints, per producer,
-- how many messages it got and the sum of their sequence numbers.
local function consume(seg)
  local ch = channel.open(seg)
  local count, sum, last = {}, {}, {}
  local pad = ("p"):rep(opts.size - HEADSIZE)
  while true do
    local msg, why = ch:recv()
    if not msg then
      assert(why == "closed", why)
      break
    end
    local me, seq, rest = string.unpack(HEAD, msg)
    assert(msg:sub(rest) == pad, "torn message")
    assert(seq > (last[me] or 0), "out of order")
    last[me], count[me], sum[me] = seq, (count[me] or 0) + 1, (sum[me] or 0) + seq
  end
  for me, c in pairs(count) do
    print(me, c, sum[me])
  end
end

if opts.role then
  local role, a, b, c = opts.role:match("^(%a+):(%d+):?(%d*):?(%d*)$")
  if role == "producer" then
    local seg <close> = assert(shm.attach(tonumber(b)))
    produce(seg, tonumber(a), tonumber(c))
  elseif role == "consumer" then
    local seg <close> = assert(shm.attach(tonumber(a)))
    consume(seg)
  else
    cli:error("bad --role " .. opts.role)
  end
  return
end

-- attached and already removed: it goes with the last detach, even if
-- every process is killed
local seg <close>, id = assert(shm.private(1 << 20))
local ch = channel.new(seg)

local lua, me = arg[-1] or "lua5.4", arg[0]
local function spawn(role)
  return assert(io.popen(("%q %q --size %d --role %s"):format(lua, me, opts.size, role)))
end

local t0 = shm.clock()
local consumers, producers = {}, {}
for i = 1, opts.consumers do
  consumers[i] = spawn(("consumer:%d"):format(id))
end
local share = opts.messages // opts.producers
for i = 1, opts.producers do
  local n = share + (i <= opts.messages % opts.producers and 1 or 0)
  producers[i] = { n = n, p = spawn(("producer:%d:%d:%d"):format(i, id, n)) }
end

local ok = true
for _, p in ipairs(producers) do
  ok = p.p:close() and ok
end
ch:close()

local got, sums = {}, {}
for _, p in ipairs(consumers) do
  for line in p:lines() do
    local who, c, s = line:match("^(%d+)\t(%d+)\t(%d+)$")
    who = tonumber(who)
    got[who] = (got[who] or 0) + tonumber(c)
    sums[who] = (sums[who] or 0) + tonumber(s)
  end
  ok = p:close() and ok
end
local elapsed = shm.clock() - t0

local total = 0
for i, p in ipairs(producers) do
  -- every sequence number 1..n exactly once: the count and the sum agree
  if (got[i] or 0) ~= p.n or (sums[i] or 0) ~= p.n * (p.n + 1) // 2 then
    ok = false
  end
  total = total + (got[i] or 0)
end

print(("%d producers -> %d consumers: %d messages of %d bytes in %.2f s, %.0f messages/s")
      :format(opts.producers, opts.consumers, total, opts.size, elapsed, total / elapsed))
if not ok then
  io.stderr:write("pipeline.lua: a process failed or messages were lost or duplicated\n")
  os.exit(1)
end
