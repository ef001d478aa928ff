-- Ctrl-C (SIGINT to a lua5.4 process) interrupts every blocking call
-- promptly, in the main thread and inside a coroutine: lua.c's handler sets
-- its hook on the main thread only, which a call blocked in a coroutine
-- never returned to (issue 10, item 6).
local h = require "helpers"

after_each(h.cleanup)

-- The child attaches the segment, sets up what the call blocks on, prints
-- "ready", then blocks (for ever, or 30 s) in `call`, in the main thread or
-- in a coroutine.
local SETUP = [[
local shm = require "sysvshm"
local channel = require "sysvshm.channel"
io.stdout:setvbuf("line")
print("pid " .. io.open("/proc/self/stat"):read("n"))
local seg = assert(shm.attach(math.tointeger(tonumber((...)))))
local where = select(2, ...)
local calls = {
  wait = function() return seg:wait(0, 0) end,
  wait_timed = function() return seg:wait(0, 0, 30) end,
  lock = function() return shm.mutex(seg, 8, { open = true }):lock() end,
  lock_timed = function() return shm.mutex(seg, 8, { open = true }):lock(30) end,
  with = function() return shm.mutex(seg, 8, { open = true }):with(print) end,
  recv = function() return channel.open(seg, 64):recv() end,
  recvunpack = function() return channel.open(seg, 64):recvunpack("i4") end,
  send = function() return channel.open(seg, 2048):send(("x"):rep(500)) end,
}
local call = calls[select(3, ...)]
print("ready")
if where == "coroutine" then
  print(coroutine.wrap(call)())
else
  print(call())
end
print("returned")
]]

describe("Ctrl-C", function()
  local seg, id, held

  before_each(function()
    seg, id = h.new_segment(4096)
    seg:fill(0)
    local shm, channel = h.shm, require "sysvshm.channel"
    -- held by the test (kept referenced: a collected handle unlocks)
    held = shm.mutex(seg, 8)
    assert.is_true(held:lock())
    channel.new(seg, 64, 1024) -- empty: recv blocks
    local full = channel.new(seg, 2048, 1024)
    assert.is_true(full:send(("y"):rep(500), 0))
    assert.is_false(full:send(("y"):rep(500), 0)) -- full: send blocks
  end)

  for _, where in ipairs({ "main", "coroutine" }) do
    for _, call in ipairs({ "wait", "wait_timed", "lock", "lock_timed", "with", "recv",
                            "recvunpack", "send" }) do
      it(("interrupts %s in the %s thread"):format(call, where), function()
        local child = h.spawn_limited(20, SETUP, id, where, call)
        child:waitpid()
        child:expect("^ready$")
        h.shm.sleep(0.2) -- let it block
        local t0 = h.shm.clock()
        local sent = os.execute("kill -INT " .. child.pid .. " 2>/dev/null")
        child:join()
        assert.is_true(sent, "the child ended before the signal:\n" .. child:output())
        local took = h.shm.clock() - t0
        local out = child:output()
        assert.is_false(child.ok, out)
        assert.matches("interrupted!", out, 1, true)
        assert.is_nil(out:find("returned", 1, true), out)
        assert.is_true(took < 3, ("took %.2f s; output:\n%s"):format(took, out))
      end)
    end
  end
end)
