-- Issue 10 item 5: an options table with a key the function does not know
-- (a typo: {readOnly = true}, {opne = true}) raises, naming the key and the
-- options there are, and does nothing, in every function that takes one:
-- shm.create, shm.attach, shm.shmctl (IPC_SET; a table with another command
-- is refused too), sysvshm.options.new (the parser definition and each
-- option), and sysvshm.layout's tables (field entries, whole-struct and
-- nested-struct values, array values). (shm.mutex's {open = ...} is in
-- mutex_spec.lua; the command line's unknown --options in cli_spec.lua.)
-- Each case is checked for the message and, through an independent view
-- (shm.list, shm.stat, another attachment), for having done nothing.
local h = require "helpers"
local shm = h.shm
local options = require "sysvshm.options"
local layout = require "sysvshm.layout"

local function oct(s) return math.tointeger(tonumber(s, 8)) end

-- The ids of the segments there are now.
local function ids()
  local t = {}
  for _, st in ipairs(assert(shm.list())) do t[st.id] = true end
  return t
end

-- The error of f(...), which must raise.
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "did not raise")
  return tostring(err)
end

describe("an unknown option", function()
  after_each(h.cleanup)

  it("makes shm.create raise, naming it, and create nothing", function()
    local P = shm.IPC_PRIVATE
    local before = ids()
    for _, c in ipairs({
      { { readOnly = true }, "readOnly" },
      { { mode = oct"600", exclusiv = false }, "exclusiv" },
      { { Mode = oct"600" }, "Mode" },
      { { [1] = 0 }, "1" },
    }) do
      local err = raises(shm.create, P, 64, c[1])
      assert.matches("bad argument #3 to '[%w.]*create' %(unknown option '" .. c[2]
                     .. "'; the options are: mode, exclusive%)", err, nil, false)
    end
    -- with a key too: still nothing there afterwards
    local key = assert(shm.ftok(h.tmpfile(), 0x55))
    raises(shm.create, key, 64, { exclusive = false, opne = true })
    local id, _, errno = shm.open(key)
    if id then h.track(id) end
    assert.is_nil(id)
    assert.equal(shm.ENOENT, errno)
    for i in pairs(ids()) do
      assert.is_true(before[i], "segment " .. i .. " was created")
    end
  end)

  it("makes shm.attach raise, naming it, and attach nothing", function()
    local id = h.new_id(64)
    for _, bad in ipairs({ { readOnly = true }, { ro = true }, { readonly = true, rw = false } }) do
      local err = raises(shm.attach, id, bad)
      assert.matches("bad argument #2 to '[%w.]*attach' %(unknown option '%w+'; the options are: readonly%)",
                     err)
    end
    assert.equal(0, assert(shm.stat(id)).nattch)
  end)

  it("makes shm.shmctl IPC_SET raise, naming it, and change nothing", function()
    local id = h.new_id(64, { mode = oct"600" })
    local before = assert(shm.stat(id))
    local err = raises(shm.shmctl, id, shm.IPC_SET, { mode = oct"644", mod = oct"644" })
    assert.matches("bad argument #3 to '[%w.]*shmctl' %(unknown option 'mod'; the options are: uid, gid, mode%)",
                   err)
    local after = assert(shm.stat(id))
    assert.equal(before.mode, after.mode)
    assert.equal(before.ctime, after.ctime)
  end)

  it("makes shm.shmctl raise for a table with another command than IPC_SET", function()
    local id = h.new_id(64)
    for _, cmd in ipairs({ "IPC_STAT", "IPC_RMID", "SHM_LOCK", "SHM_UNLOCK" }) do
      local err = raises(shm.shmctl, id, shm[cmd], { mode = oct"644" })
      assert.matches("bad argument #3 to '[%w.]*shmctl' %(only IPC_SET takes a table of options%)", err,
                     nil, false, cmd)
    end
    -- IPC_RMID with a table removed nothing; nil is still fine
    local st = assert(shm.stat(id))
    assert.is_false(st.removed)
    assert.same(st, shm.shmctl(id, shm.IPC_STAT, nil))
  end)

  it("makes sysvshm.options.new raise for the parser definition, at the caller", function()
    local err = raises(function() local p = options.new({ prog = "x", min_arg = 1 }) return p end)
    assert.matches("unknown_options_spec.lua:%d+: options.new: unknown field 'min_arg' in the parser "
                   .. "definition %(known: args, description, epilog, max_args, min_args, options_first, prog%)",
                   err)
    err = raises(options.new, { prog = "x", { "count", type = "integer" }, [3] = { "x" } })
    assert.matches("unknown field '3' in the parser definition", err, nil, true)
  end)

  it("makes sysvshm.options.new raise for an option's fields", function()
    local err = raises(function()
      local p = options.new({ prog = "x", { "count", type = "integer", defualt = 3 } })
      return p
    end)
    assert.matches("unknown_options_spec.lua:%d+: options.new: unknown field 'defualt' in option #1 "
                   .. "%(count%) %(known: check, default, default_text, help, max, metavar, min, name, "
                   .. "short, type%)", err)
    err = raises(options.new, { prog = "x", { "a" }, { name = "b", "b2" } })
    assert.matches("unknown field '1' in option #2 (b)", err, nil, true)
    err = raises(options.new, { prog = "x", { "a", "extra" } })
    assert.matches("unknown field '2' in option #1 (a)", err, nil, true)
    err = raises(options.new, { prog = "x", "count" })
    assert.matches("option #1 is a string, not a table", err, nil, true)
    -- and the fields it knows still work
    local p = options.new { prog = "x", args = "A", min_args = 1, max_args = 1, options_first = true,
      description = "d", epilog = "e",
      { name = "count", short = "c", type = "integer", default = 3, default_text = "three",
        metavar = "N", help = "h", min = 1, max = 9, check = function() return true end } }
    local o = assert(p:parse({ "-c", "5", "a" }))
    assert.same({ 5, "a" }, { o.count, o[1] })
  end)

  it("makes sysvshm.layout raise for tables with keys it does not know", function()
    assert.matches("field #1: unexpected key name", raises(layout.struct, { { "x", "i4", name = "y" } }),
                   nil, true)
    assert.matches("bad key n in struct fields", raises(layout.struct, { { "x", "i4" }, n = 1 }), nil, true)
    local P = layout.struct({ { "x", "i4" }, { "y", "i4" } }, "p")
    local L = layout.struct({ { "p", P }, { "a", "i4", 2 } }, "l")
    local seg = h.new_segment(64)
    seg:fill(0xAB)
    local bytes = seg:read(0)
    assert.matches("unknown field 'z'", raises(L.write, L, seg, 0, { p = { x = 1 }, z = 2 }), nil, true)
    assert.matches("unknown field 'p.z'", raises(L.write, L, seg, 0, { p = { x = 1, z = 2 } }), nil, true)
    local v = L:view(seg, 0)
    assert.matches("unknown field 'p.z'", raises(function() v.p = { z = 1 } end), nil, true)
    assert.matches("bad index 3 for field 'a'", raises(function() v.a = { 1, 2, 3 } end), nil, true)
    assert.matches("bad index k for field 'a'", raises(function() v.a = { k = 1 } end), nil, true)
    assert.equal(bytes, h.attach(seg:id()):read(0), "a refused write changed the segment")
  end)
end)

describe("sysvshm.options parse_or_exit", function()
  after_each(h.cleanup)

  it("exits 1 when the usage asked for with --help cannot be written", function()
    local script = h.tmpfile()
    local f = assert(io.open(script, "w"))
    f:write('require("sysvshm.options").new({ prog = "t" }):parse_or_exit({ "--help" })\n')
    f:close()
    local r = h.sh(h.lua_env() .. "lua5.4 " .. h.quote(script) .. " >/dev/full")
    assert.equal(1, r.code, h.explain(r))
    assert.matches("^t: cannot write the usage: ", r.stderr)
    r = h.sh(h.lua_env() .. "lua5.4 " .. h.quote(script))
    assert.equal(0, r.code, h.explain(r))
    assert.matches("^usage: t %[options%]", r.stdout)
  end)
end)
