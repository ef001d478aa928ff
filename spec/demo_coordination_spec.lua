-- The coordination demos: counter.lua (atomics and the mutex across
-- processes) and pipeline.lua (producers and consumers over a channel).
-- Both must finish on their own, print exact results, take --help, refuse
-- bad options with a usage and no stack trace, and leave no segment.
local h = require "helpers"

local function run(script, args)
  -- Run from the checkout with no 5.4 search paths set: the scripts must
  -- find the in-tree build by themselves.
  return h.sh("cd " .. h.quote(h.root) .. " && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 lua5.4 "
    .. "lua/demo/" .. script .. " " .. (args or ""))
end

-- Segments present and not marked for removal (other programs running at
-- the same time may come and go; this only asks that none is added).
local function segments()
  local r = h.sh("ipcs -m | awk '$2 ~ /^[0-9]+$/ && $0 !~ /dest/ {print $2}'")
  local set = {}
  for id in r.stdout:gmatch("%d+") do set[id] = true end
  return set
end

local function added(before, after)
  local new = {}
  for id in pairs(after) do
    if not before[id] then new[#new + 1] = id end
  end
  return new
end

describe("demo counter.lua", function()
  it("adds from several processes with exact totals, and leaves no segment", function()
    local before = segments()
    local r = run("counter.lua", "--procs 3 --count 20000")
    assert.is_true(r.ok, r.stderr)
    assert.matches("atomic_add: 60000 %(expected 60000%)", r.stdout)
    assert.matches("mutex:      60000 %(expected 60000%)", r.stdout)
    assert.same({}, added(before, segments()))
  end)

  it("shows its usage with --help and exits 0", function()
    local r = run("counter.lua", "--help")
    assert.is_true(r.ok)
    assert.matches("usage: counter.lua", r.stdout .. r.stderr)
    assert.matches("%-%-procs", r.stdout .. r.stderr)
  end)

  it("refuses a bad option with one line and the usage, exit 2", function()
    local r = run("counter.lua", "--procs zero")
    assert.equal(2, r.code)
    assert.matches("^counter.lua: option %-%-procs: 'zero' is not an integer\n", r.stderr)
    assert.matches("usage: counter.lua", r.stderr)
    assert.not_matches("traceback", r.stderr)
    assert.equal("", r.stdout)
  end)
end)

describe("demo pipeline.lua", function()
  it("carries every message exactly once from 2 producers to 3 consumers", function()
    local before = segments()
    local r = run("pipeline.lua", "--producers 2 --consumers 3 --messages 30001 --size 100")
    assert.is_true(r.ok, r.stderr)
    assert.matches("^2 producers %-> 3 consumers: 30001 messages of 100 bytes in [%d.]+ s, %d+ messages/s\n$",
      r.stdout)
    assert.same({}, added(before, segments()))
  end)

  it("works with one producer and one consumer and no messages", function()
    local r = run("pipeline.lua", "--producers 1 --consumers 1 --messages 0")
    assert.is_true(r.ok, r.stderr)
    assert.matches(": 0 messages of 64 bytes", r.stdout)
  end)

  it("shows its usage with --help and refuses bad options", function()
    local r = run("pipeline.lua", "--help")
    assert.is_true(r.ok)
    assert.matches("%-%-producers", r.stdout .. r.stderr)
    r = run("pipeline.lua", "--size 3")
    assert.equal(2, r.code)
    assert.matches("option %-%-size: must be at least 12, not 3", r.stderr)
    assert.not_matches("traceback", r.stderr)
  end)
end)
