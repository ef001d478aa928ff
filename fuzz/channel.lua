-- Fuzz target "channel" (fuzz/driver.c runs it under libFuzzer): a channel
-- region whose bytes another process has overwritten with anything, run by
-- the region harness (fuzz/region.lua: the input's layout, the canary, the
-- program loop).  The channel must raise, or answer, but never crash,
-- hang, or read or write outside its region.
--
-- Each input lays a valid channel with channel.new and runs a small
-- program on it: sends and receives (send, recv, sendpack, recvunpack,
-- send_many, recv_many, all with timeout 0: nothing waits), pending,
-- close, closed, maxsize, tostring, channel.open on the region, a second
-- handle, and overwrites of all or part of the region -- header, locks and
-- ring alike: nothing here knows the header's layout -- with bytes of the
-- input.  A message received is never longer than maxsize.
--
-- Region sizes: channel.MIN_SIZE + 64 * (b0 % 64), 1024 .. 5056; one that
-- stops short of the segment end is 0 .. 63 bytes shorter.  Programs: up
-- to 31 operations.
local channel = require "sysvshm.channel"
local region = require "region"

local counter = 0

local function ops(r)
  local seg, off, payload = r.seg, r.off, r.payload
  local ch = channel.new(seg, off, r.size)
  local other = ch

  return {
    [0] = function(a)
      if a < 8 then return ch:send(("m"):rep(a * 37), 0) end
      local list = {} -- a >= 8: a batch of a - 7 messages of varied sizes
      for i = 1, a - 7 do list[i] = ("b"):rep((a * i * 29) % 200) end
      local n, why = ch:send_many(list, 0)
      if math.type(n) ~= "integer" or n < 0 or n > #list or (n < #list) ~= (why ~= nil) then
        r.fail("send_many returned %s, %s", tostring(n), tostring(why))
      end
    end,
    function(a) return ch:send(("M"):rep(ch:maxsize() - a), 0) end,
    function(a)
      if a >= 8 then -- a batch of at most a - 7
        local l, n = ch:recv_many(a - 7, 0, a % 2 == 0 and { "old", "old" } or nil)
        if l ~= nil then
          if n < 1 or n > a - 7 or #l ~= n then
            r.fail("recv_many returned %d messages (max %d)", #l, a - 7)
          end
          for i = 1, n do
            if #l[i] > ch:maxsize() then
              r.fail("recv_many returned %d bytes, more than maxsize", #l[i])
            end
          end
        end
        return
      end
      local m = ch:recv(0)
      if type(m) == "string" and #m > ch:maxsize() then
        r.fail("recv returned %d bytes, more than maxsize", #m)
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
    function(a) r.overwrite(a * 256 + r.b3, payload) end, -- all or part of it
    function() -- open the region again (it may refuse it now)
      local c = channel.open(seg, off)
      ch = c
    end,
    function() ch, other = other, ch end,
    function() other = channel.open(seg, off) end,
    function(a) return ch:send(payload:sub(1, a * 16), 0) end,
    function(a) r.overwrite(a * 8, r.take(8)) end,        -- bytes 0..127
    function(a) r.overwrite(128 + a * 8, r.take(8)) end,  -- bytes 128..255
  }
end

return region.target {
  name = "channel",
  segsize = 8192,
  canary = 0xA5,
  min_size = channel.MIN_SIZE,
  shorten = function(size, k) return size - k % 64 end,
  max_ops = 32,
  -- no program: the payload over the region, then use it
  default_prog = "\9\2\0\4\3\6\7\2",
  ops = ops,
}
