--- A shared dictionary in a segment: OpenResty's `ngx.shared.DICT` for any
-- Lua 5.4 processes, with integers kept as integers, compare-and-set,
-- versions to wait on, paged key scans and a structure that survives
-- processes killed in the middle of a call.
--
--     local dict = require "sysvshm.dict"
--     local d = dict.attach(key, 1 << 20)      -- create, or open another's
--     d:set("hits", 0)
--     d:incr("hits", 1)                        --> 1
--     for k, v in d:pairs() do print(k, v) end
--
-- Methods (ngx's names, arguments, results and error strings): `get`,
-- `get_stale`, `set`, `safe_set`, `add`, `safe_add`, `replace`, `delete`,
-- `incr`, `lpush`, `rpush`, `lpop`, `rpop`, `llen`, `ttl`, `expire`,
-- `flush_all`, `flush_expired`, `get_keys`, `capacity`, `free_space`; and
-- beyond ngx: `cas`, `version`, `wait`, `keys`, `pairs`, `stats`, `check`,
-- `segment`.
-- @module sysvshm.dict
local core = require "sysvshm.core"

local M = {
  MIN_SIZE = core.DICT_MIN_SIZE, -- smallest region
}

local check_opts = require "sysvshm.checkopts"

--- Lay a new, empty dictionary into a region of a segment.
-- @tparam segment seg a writable attachment
-- @tparam[opt=0] integer off region start, a multiple of 64
-- @tparam[opt] integer size region size in bytes (default: the rest of the
--   segment; at least `MIN_SIZE`)
-- @tparam[opt] table opts `lock_timeout`: seconds a call that writes waits
--   for the lock before it raises "dict lock: held for over N s" (default
--   10; the holder stopped, or the lock word was overwritten); this
--   handle's own, not the dictionary's. Unknown options raise.
-- @treturn dict
-- @function new
M.new = core.dict_new -- the C function itself: its errors name `new` and the caller's line

--- Use the dictionary that `new` laid at off (in this or another process).
-- Raises when the region holds no dictionary, one of another layout
-- version, or a header out of range.
-- @tparam segment seg a writable attachment
-- @tparam[opt=0] integer off
-- @tparam[opt] table opts `lock_timeout`, as for `new`
-- @treturn dict
-- @function open
M.open = core.dict_open

--- Create the segment for key and a dictionary in it; or, when another
-- process created it first, open that one, waiting (at most `opts.timeout`
-- seconds, default 5) until its creator has laid it out.
-- @tparam integer key a System V key (`sysvshm.ftok`)
-- @tparam integer size bytes
-- @tparam[opt] table opts `mode` (default 0600), `timeout` (seconds),
--   `lock_timeout` (as for `new`)
-- @treturn[1] dict (`d:segment()` gives the segment, to remove it when done)
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] integer errno
function M.attach(key, size, opts)
  check_opts(opts, { mode = true, timeout = true, lock_timeout = true }, 3, "attach")
  opts = opts or {}
  local handle = { lock_timeout = opts.lock_timeout }
  local id, err, en = core.create(key, size, { mode = opts.mode or 384 })
  if id then
    local seg, aerr, aen = core.attach(id)
    if not seg then
      core.remove(id)
      return nil, aerr, aen
    end
    return M.new(seg, 0, nil, handle)
  end
  if en ~= core.EEXIST then return nil, err, en end
  id, err, en = core.open(key)
  if not id then return nil, err, en end
  local seg, aerr, aen = core.attach(id)
  if not seg then return nil, aerr, aen end
  local deadline = core.clock() + (opts.timeout or 5)
  while true do
    local ok, d = pcall(M.open, seg, 0, handle)
    if ok then return d end
    if core.clock() >= deadline then
      seg:detach()
      return nil, "dict.attach: no dictionary in segment " .. id .. " after waiting: " ..
        tostring(d), core.EINVAL
    end
    core.sleep(0.01)
  end
end

local methods = core.dict_methods

--- Iterate over the keys and values, a page (`keys`) at a time: a key
-- present during the whole loop is seen exactly once; one set or deleted
-- meanwhile may or may not be.
-- @function dict:pairs
-- @tparam[opt=100] integer count keys per page
-- @usage for k, v in d:pairs() do print(k, v) end
function methods.pairs(d, count)
  local page, i, cursor = nil, 0, 0
  return function()
    while true do
      if page and i < #page then
        i = i + 1
        local k = page[i]
        local v = d:get(k)
        if v ~= nil then return k, v end
      elseif cursor == nil then
        return nil
      else
        page, cursor = d:keys(cursor, count)
        i = 0
      end
    end
  end
end

return M
