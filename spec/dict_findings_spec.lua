-- Findings of the dict fuzz target (fuzz/dict.lua) in the structure code
-- (src/dict_store.c), as plain reproducers: each test is what must hold,
-- and fails until the code is fixed.
local h = require "helpers"
local dict = require "sysvshm.dict"

describe("dict region with hostile bytes (fuzz findings)", function()
  after_each(h.cleanup)

  -- DictState starts at byte 192 of the region; its compaction journal is
  -- j_op, j_from, j_to, j_len, j_done (u32 each) from byte 272 (src/dict.h).
  local JOURNAL = "=I4 I4 I4 I4 I4"
  local J_OP = 272

  it("a journaled move from past the heap end is not replayed outside the region", function()
    -- finish_move checks len > heap_end - from, which wraps around when
    -- from > heap_end: the repair then copies bytes from past the region
    -- to past the region (here both inside the segment, after an 8 KiB
    -- region; from near 4 GiB it reads unmapped memory: SIGSEGV, see below)
    local seg = h.new_segment(65536)
    seg:fill(0x5A)
    local d = dict.new(seg, 0, 8192)
    assert(d:set("a", 1))
    seg:write(20000, ("X"):rep(56))
    seg:pack(JOURNAL, J_OP, 1, 20000, 12000, 56, 0)
    pcall(d.set, d, "b", 2) -- the lock holder finds the journal and repairs
    assert.equal(("\90"):rep(56), seg:read(12000, 56), "the repair wrote outside its region")
    assert.is_nil(d:check())
  end)

  it("a journaled move from near 4 GiB does not crash the process that repairs", function()
    local r = h.run_lua([[
      local shm = require "sysvshm"
      local dict = require "sysvshm.dict"
      local id = assert(shm.create(shm.IPC_PRIVATE, 16384))
      local seg = assert(shm.attach(id))
      shm.remove(id)
      local d = dict.new(seg)
      assert(d:set("a", 1))
      seg:pack("=I4 I4 I4 I4 I4", 272, 1, 0xfffffff8, 0x1000, 56, 0)
      print(pcall(d.set, d, "b", 2))
      print(d:check() or "sound")
    ]])
    assert.equal(0, r.code, h.explain(r))
    assert.matches("^%a+\t[^\n]*\nsound\n$", r.stdout) -- pcall's answer, then a sound check
  end)
end)
