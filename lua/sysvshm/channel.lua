--- A bounded queue of string messages in a segment, for several senders and
-- receivers in several processes.
--
--     local channel = require "sysvshm.channel"
--     local ch = channel.new(seg)        -- lay it out in the whole segment
--     ch:send("hello")                   -- another process: channel.open(seg)
--     print(ch:recv())                   --> hello
--
-- The region takes `channel.HEADER` bytes of bookkeeping; a message may be
-- up to half the region. No message is lost, duplicated, reordered per
-- sender or torn; a process killed in the middle of a call leaves the queue
-- usable. Blocking sleeps on futexes; while the other side keeps up, no
-- system call is made. Methods: `send(msg [, timeout])`, `recv([timeout])`,
-- `sendpack(fmt, ... [, timeout])`, `recvunpack(fmt [, timeout])` (values
-- packed with a `string.pack` format straight into the channel and
-- unpacked straight out of it, no Lua string for the message),
-- `close()`, `closed()`, `maxsize()`, `pending()`.
--
--     ch:sendpack("<I8 d", seq, x)             -- the bytes string.pack makes
--     local seq, x = ch:recvunpack("<I8 d")
-- @module sysvshm.channel
local core = require "sysvshm.core"

local M = {
  HEADER = core.CHANNEL_HEADER, -- bytes of bookkeeping at the start of the region
  MIN_SIZE = core.CHANNEL_MIN_SIZE, -- smallest region
}

--- Lay a new, empty channel into a segment region.
-- @tparam segment seg a writable attachment
-- @tparam[opt=0] integer off region start, a multiple of 64
-- @tparam[opt] integer size region size in bytes, header included
--   (default: the rest of the segment; at least `MIN_SIZE`)
-- @treturn channel
-- @function new
M.new = core.channel_new -- the C function itself: its errors name `new` and the caller's line

--- Use the channel that `new` laid at off (in this or another process).
-- @tparam segment seg a writable attachment
-- @tparam[opt=0] integer off
-- @treturn channel
-- @function open
M.open = core.channel_open

return M
