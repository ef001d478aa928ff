-- Several processes: a lua5.4 child attaches by id (or by key) and sees the
-- parent's writes, the parent sees the child's; read-only children cannot
-- write; user nobody is held to the segment's permission bits.
local h = require "helpers"
local shm = require "sysvshm"

after_each(h.cleanup)

-- Run a child chunk and require a clean exit; returns its stdout.
local function child(code, args)
  local r = h.run_lua(code, args)
  assert.is_true(r.ok, h.explain(r))
  return r.stdout
end

describe("a second process", function()
  it("attaches by id, sees the parent's writes, and the parent sees its own", function()
    local seg, id = h.new_segment(4096)
    seg:write(0, "from parent\0")
    seg:write(4000, "tail\0")
    local out = child([[
      local shm = require "sysvshm"
      local id = ...
      local seg = assert(shm.attach(id))
      io.write(seg:cstring(0), "|", seg:cstring(4000), "|", shm.stat(id).nattch)
      seg:write(100, "from child\0")
      seg:setbyte(4095, 42)
      assert(seg:detach())
    ]], { id })
    assert.equal("from parent|tail|2", out)
    assert.equal("from child", seg:cstring(100))
    assert.equal(42, seg:byte(4095))
    assert.equal("from parent", seg:cstring(0))
    assert.equal(1, shm.stat(id).nattch)
  end)

  it("is recorded by the system: lpid is the child's pid, cpid stays ours", function()
    local _, id = h.new_segment(64)
    local out = child([[
      local shm = require "sysvshm"
      local seg = assert(shm.attach((...)))
      seg:detach()
      io.write(io.open("/proc/self/stat"):read("l"):match("^%d+"))
    ]], { id })
    local st = shm.stat(id)
    assert.equal(tonumber(out), st.lpid)
    assert.not_equal(h.pid(), st.lpid)
    assert.equal(h.pid(), st.cpid)
  end)

  it("finds the segment by key with ftok and open", function()
    local path = h.tmpfile()
    local key = assert(shm.ftok(path, 0x66))
    local id = h.track(shm.create(key, 64))
    local seg = h.attach(id)
    seg:write(0, "by key\0")
    local out = child([[
      local shm = require "sysvshm"
      local path = ...
      local id = assert(shm.open(assert(shm.ftok(path, "f"))))
      local seg <close> = assert(shm.attach(id))
      io.write(id, " ", seg:cstring(0))
    ]], { path })
    assert.equal(id .. " by key", out)
  end)

  it("leaves the segment attached in the parent after it exits without detaching", function()
    local seg, id = h.new_segment(64)
    child([[
      local shm = require "sysvshm"
      local seg = assert(shm.attach((...)))
      seg:write(0, "exit")
      os.exit(0, false) -- no close of the state: the kernel detaches
    ]], { id })
    assert.equal(1, shm.stat(id).nattch)
    assert.equal("exit", seg:read(0, 4))
  end)

  it("cannot write through a read-only attachment", function()
    local seg, id = h.new_segment(64)
    seg:write(0, "parent's")
    local out = child([[
      local shm = require "sysvshm"
      local id = ...
      local ro = assert(shm.attach(id, { readonly = true }))
      local ro2 = assert(shm.shmat(id, shm.SHM_RDONLY))
      local results = { ro:read(0, 8), tostring(ro:readonly()) }
      for _, s in ipairs { ro, ro2 } do
        for _, f in ipairs {
          function() s:write(0, "child's!") end,
          function() s:setbyte(0, 0) end,
          function() s:fill(0) end,
        } do
          local ok, err = pcall(f)
          results[#results + 1] = ok and "wrote" or (err:match("read%-only") and "refused" or err)
        end
      end
      io.write(table.concat(results, " "))
    ]], { id })
    assert.equal("parent's true refused refused refused refused refused refused", out)
    assert.equal("parent's", seg:read(0, 8))
  end)
end)

describe("user nobody", function()
  -- nobody's view of a segment: "attach:<errno or ok>" for read-write and
  -- read-only attachments, then what it read and whether it could write.
  local NOBODY_PROBE = [[
    local shm = require "sysvshm"
    local id = ...
    local out = {}
    local rw, _, en = shm.attach(id)
    out[#out + 1] = "rw:" .. (rw and "ok" or tostring(en))
    local ro, _, en2 = shm.attach(id, { readonly = true })
    out[#out + 1] = "ro:" .. (ro and "ok" or tostring(en2))
    if ro then
      out[#out + 1] = "read:" .. ro:cstring(0)
      out[#out + 1] = "write:" .. (pcall(ro.write, ro, 0, "X") and "ok" or "refused")
    end
    local _, _, en3 = shm.remove(id)
    out[#out + 1] = "remove:" .. tostring(en3)
    io.write(table.concat(out, " "))
  ]]

  local function as_nobody(id)
    local r = h.run_lua_as_nobody(NOBODY_PROBE, { id })
    assert.is_true(r.ok, h.explain(r))
    return r.stdout
  end

  it("cannot attach a 0600 segment of root's (EACCES) #env", function()
    local can, why = h.nobody_ok()
    if not can then pending(h.env(why)) return end
    local seg, id = h.new_segment(64)
    seg:write(0, "secret\0")
    assert.equal(("rw:%d ro:%d remove:%d"):format(shm.EACCES, shm.EACCES, shm.EPERM),
      as_nobody(id))
    assert.equal("secret", seg:cstring(0))
    assert.is_false(shm.stat(id).removed)
  end)

  it("attaches a 0644 segment read-only but not read-write #env", function()
    local can, why = h.nobody_ok()
    if not can then pending(h.env(why)) return end
    local seg, id = h.new_segment(64, { mode = tonumber("644", 8) })
    seg:write(0, "public\0")
    assert.equal(("rw:%d ro:ok read:public write:refused remove:%d")
      :format(shm.EACCES, shm.EPERM), as_nobody(id))
    assert.equal("public", seg:cstring(0))
    assert.is_false(shm.stat(id).removed)
  end)

  it("gets the errno and a message naming the call #env", function()
    local can, why = h.nobody_ok()
    if not can then pending(h.env(why)) return end
    local _, id = h.new_segment(64)
    local r = h.run_lua_as_nobody([[
      local shm = require "sysvshm"
      local v, msg, en = shm.attach((...))
      io.write(tostring(v), "|", msg, "|", en, "|", select("#", shm.attach((...))))
    ]], { id })
    assert.is_true(r.ok, h.explain(r))
    local v, msg, en, n = r.stdout:match("^(.-)|(.-)|(.-)|(.-)$")
    assert.equal("nil", v)
    assert.matches("^shmat: ", msg)
    assert.equal(tostring(shm.EACCES), en)
    assert.equal("3", n)
  end)
end)
