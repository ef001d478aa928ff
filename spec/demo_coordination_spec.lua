-- The coordination demos: counter.lua (atomics and the mutex across
-- processes), pipeline.lua (producers and consumers over a channel) and
-- ratelimit.lua (a rate limiter in a sysvshm.dict).
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

describe("demo ratelimit.lua", function()
  it("admits at most K per client and window across workers, finishes, and leaves no segment", function()
    local before = segments()
    local r = run("ratelimit.lua", "--workers 3 --clients 5 --limit 20 --window 0.05 --seconds 1")
    assert.is_true(r.ok, r.stderr)
    local requests, secs = r.stdout:match("^3 workers, 5 clients, at most 20 per client per 0.05 s window: "
                                          .. "(%d+) requests in ([%d.]+) s, %d+ requests/s\n")
    assert.is_not_nil(requests, r.stdout)
    assert.is_true(tonumber(secs) >= 1 and tonumber(secs) < 30, secs)
    local admitted, refused, windows = r.stdout:match("\nadmitted (%d+), refused (%d+), in (%d+) windows of a client; "
                                                      .. "evictions 0\n")
    assert.equal(tonumber(requests), tonumber(admitted) + tonumber(refused))
    -- at most 20 in each window of each client, and about 20 windows of 0.05 s per client
    assert.is_true(tonumber(admitted) <= 20 * tonumber(windows), r.stdout)
    assert.is_true(tonumber(windows) >= 5 * 15, r.stdout)
    assert.matches("\nverdict: no client got more than 20 in any window\n$", r.stdout)
    assert.equal("", r.stderr)
    assert.same({}, added(before, segments()))
  end)

  it("catches a counter that is not atomic (--racy: get, then set)", function()
    -- lost updates need two workers to interleave: likely in a second, not
    -- certain, so a few runs; one that catches it is enough
    local before, caught, r = segments(), false, nil
    for _ = 1, 5 do
      r = run("ratelimit.lua", "--racy --workers 4 --clients 1 --limit 50 --window 0.02 --seconds 1")
      if not r.ok then
        assert.equal(1, r.code, r.stderr)
        assert.matches("^ratelimit.lua: FAILED: 0 worker%(s%) failed, [1-9]%d* window%(s%) over the limit", r.stderr)
        assert.not_matches("verdict", r.stdout)
        caught = true
        break
      end
    end
    assert.is_true(caught, "five racy runs, no lost update seen: " .. r.stdout)
    assert.same({}, added(before, segments()))
  end)

  it("shows its usage with --help and refuses bad options", function()
    local r = run("ratelimit.lua", "--help")
    assert.is_true(r.ok)
    assert.matches("^usage: ratelimit.lua %[options%]", r.stdout)
    assert.matches("%-%-limit K", r.stdout)
    r = run("ratelimit.lua", "--window 0")
    assert.equal(2, r.code)
    assert.matches("^ratelimit.lua: option %-%-window: must be at least 0.001", r.stderr)
    assert.not_matches("traceback", r.stderr)
    assert.equal("", r.stdout)
  end)
end)
