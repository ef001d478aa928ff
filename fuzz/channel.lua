-- Fuzz target "channel" (fuzz/driver.c runs it under libFuzzer): a channel
-- region whose bytes another process has overwritten with anything.  The
-- channel must raise, or answer, but never crash, hang, or read or write
-- outside its region.
--
-- Each input lays a valid channel with channel.new (so that the bytes are
-- plausible to begin with) in a region that ends at the segment end (a
-- guard page follows: an access past it faults) and runs a small program
-- read from the input: sends and receives (send, recv, sendpack,
-- recvunpack, send_many, recv_many, all with timeout 0: nothing waits), pending, close, closed,
-- maxsize, tostring, channel.open on the region, a second handle, and
-- overwrites of all or part of the region -- header, locks and ring alike:
-- nothing here knows the header's layout -- with bytes of the input.  Every
-- call runs under pcall: an error is an answer.  The segment bytes in front
-- of the region and after an explicitly sized region hold a canary
-- pattern that must survive, and a message received is never longer than
-- maxsize.
--
-- Input: b0 region size, b1 flags, b2 program length, b3 overwrite base,
-- the program (one byte an operation: low 4 bits the operation, high 4
-- bits its argument), then the payload (the bytes overwrites copy).
local channel = require "sysvshm.channel"
local core = require "sysvshm.core"

local T = { segsize = 8192 }

local seg, S
local CANARY = 0xA5

function T.init(segid, segsize)
  S = segsize
  seg = assert(core.attach(segid))
  assert(#seg == S)
end

local function check_canary(lo, hi, what)
  if hi <= lo then return end
  local want = string.char(CANARY):rep(hi - lo)
  if seg:read(lo, hi - lo) ~= want then
    error(string.format("channel fuzz: the bytes %s the region changed", what), 0)
  end
end

local counter = 0

function T.one(input)
  if #input < 4 then return end
  local b0, b1, b2, b3 = input:byte(1, 4)
  local region = channel.MIN_SIZE + 64 * (b0 % 64) -- 1024 .. 5056
  local off = S - region
  local size = region
  if b1 & 1 ~= 0 then -- a region that stops short of the segment end
    size = region - (b1 >> 1) % 64
    if size < channel.MIN_SIZE then size = channel.MIN_SIZE end
  end
  local nops = b2 % 32
  local prog = input:sub(5, 4 + nops)
  local payload = input:sub(5 + nops)
  local cursor = 1 -- into payload, for the 8-byte overwrites

  seg:fill(CANARY)
  local ch = channel.new(seg, off, size)
  local other = ch
  local bad -- what went wrong without an error (pcall would swallow it)

  -- copy bytes of the payload over the region at rel, cut at its end
  local function overwrite(rel, bytes)
    rel = rel % size
    bytes = bytes:sub(1, size - rel)
    if #bytes > 0 then seg:write(off + rel, bytes) end
  end

  local function next8()
    if #payload == 0 then return "" end
    local s = payload:sub(cursor, cursor + 7)
    cursor = cursor + 8
    if cursor > #payload then cursor = 1 end
    return s
  end

  local ops = {
    [0] = function(a)
      if a < 8 then return ch:send(("m"):rep(a * 37), 0) end
      local list = {} -- a >= 8: a batch of a - 7 messages of varied sizes
      for i = 1, a - 7 do list[i] = ("b"):rep((a * i * 29) % 200) end
      local n, why = ch:send_many(list, 0)
      if math.type(n) ~= "integer" or n < 0 or n > #list or (n < #list) ~= (why ~= nil) then
        bad = string.format("send_many returned %s, %s", tostring(n), tostring(why))
      end
    end,
    function(a) return ch:send(("M"):rep(ch:maxsize() - a), 0) end,
    function(a)
      if a >= 8 then -- a batch of at most a - 7
        local l, n = ch:recv_many(a - 7, 0, a % 2 == 0 and { "old", "old" } or nil)
        if l ~= nil then
          if n < 1 or n > a - 7 or #l ~= n then
            bad = string.format("recv_many returned %d messages (max %d)", #l, a - 7)
          end
          for i = 1, n do
            if #l[i] > ch:maxsize() then
              bad = string.format("recv_many returned %d bytes, more than maxsize", #l[i])
            end
          end
        end
        return
      end
      local m = ch:recv(0)
      if type(m) == "string" and #m > ch:maxsize() then
        bad = string.format("recv returned %d bytes, more than maxsize", #m)
      end
    end,
    function(a)
      counter = counter + 1
      return ch:sendpack("<I8 s2", counter, ("p"):rep(a * 11), 0)
    end,
    function() return ch:recvunpack("<I8 s2", 0) end,
    function(a) return ch:recvunpack(a % 2 == 0 and "<I2 z" or "!8 j Xd c3", 0) end,
    function() return ch:pending() end,
    function() return ch:close() end,
    function() return ch:closed(), ch:maxsize(), tostring(ch) end,
    function(a) overwrite(a * 256 + b3, payload) end, -- all or part of it
    function() -- open the region again (it may refuse it now)
      local c = channel.open(seg, off)
      ch = c
    end,
    function() ch, other = other, ch end,
    function() other = channel.open(seg, off) end,
    function(a) return ch:send(payload:sub(1, a * 16), 0) end,
    function(a) overwrite(a * 8, next8()) end,        -- bytes 0..127
    function(a) overwrite(128 + a * 8, next8()) end,  -- bytes 128..255
  }

  if nops == 0 then -- no program: the payload over the region, then use it
    prog = "\9\2\0\4\3\6\7\2"
  end
  for i = 1, #prog do
    local op = prog:byte(i)
    pcall(ops[op % 16], op >> 4)
  end

  if bad then error("channel fuzz: " .. bad, 0) end
  check_canary(0, off, "before")
  check_canary(off + size, S, "after")
end

return T
