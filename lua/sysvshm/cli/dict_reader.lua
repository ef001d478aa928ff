--- Reading a sysvshm.dict without its handle (the `sysvshm dict` command):
-- a checked snapshot of the region, nothing written.
-- @module sysvshm.cli.dict_reader
local shm = require "sysvshm"
local ipc = require "sysvshm.cli.ipc"

local holds, sleep = ipc.holds, ipc.sleep

local M = {}

local sformat = string.format


-- sysvshm.dict's layout (src/dict.h, dict_store.c), for reading a region
-- without the module's handle: nothing here is trusted, every offset and
-- length is checked as dict_store.c checks it, every walk is bounded.
local DICT = {
  VERSION = 1, MIN_REGION = 8192, HEADER = 512, ALIGN = 64, MAX_KEY = 65535,
  STATE = 192, SEQ = 128, ENTRY_HEAD = 56, ENTRY_TAG = 0x52544e45,
  HEAD_FMT = "=I4 I4 I8 I4 I4 I4 I4 I4 I4",               -- magic .. stripes_off
  STATE_FMT = "=I4 I4 I4 I4 I8 I8 I8 I8 I8 I8 I8 I8",      -- top .. repairs
  ENTRY_FMT = "=I4 I4 I4 I4 I4 I4 I4 I4 B xxx I4 i8 I8",   -- DictEntry, 56 bytes
  TYPES = { "boolean", "integer", "float", "string", "list" },
}

-- dict_layout: the geometry new() lays out in a region of that size.
local function dict_layout(region)
  if region < DICT.MIN_REGION or region > 0xffffffff - 8 then
    return nil
  end
  local ns = math.max(1, math.min(16, region // 65536))
  local nb = 16
  while nb < 1 << 24 and nb * 256 < region do
    nb = nb * 2
  end
  local g = { region = region, nstripes = ns, stripes_off = DICT.HEADER, nbuckets = nb,
              buckets_off = DICT.HEADER + ns * 256 }
  g.heap_off = (g.buckets_off + nb * 4 + 7) & ~7
  g.heap_end = region & ~7
  if g.heap_off >= g.heap_end or g.heap_end - g.heap_off < 1024 then
    return nil
  end
  return g
end

-- dict_hash, with Lua's wrapping 64-bit integers (native byte order).
local function dict_hash(k)
  local n = #k
  local h, pos = 0x9e3779b97f4a7c15 ~ n, 1
  while n - pos + 1 >= 8 do
    h = (h ~ string.unpack("=i8", k, pos)) * 0xff51afd7ed558ccd
    h = h ~ (h >> 32)
    pos = pos + 8
  end
  local rest = n - pos + 1
  local w = rest > 0 and string.unpack("=I" .. rest, k, pos) or 0
  h = (h ~ w) * 0xc4ceb9fe1a85ec53
  h = h ~ (h >> 29)
  return (h ~ (h >> 32)) & 0xffffffff
end

-- The elements of a list value (u32 count, then u8 type and 8 bytes, or
-- u32 length and bytes), or nil when it is malformed (as list_check).
local function list_items(v)
  if #v < 4 then
    return nil
  end
  local count, pos = string.unpack("=I4", v)
  local items = {}
  for i = 1, count do
    local t = v:byte(pos)
    if (t == 2 or t == 3) and #v - pos >= 8 then
      items[i] = string.unpack(t == 2 and "=i8" or "=d", v, pos + 1)
      pos = pos + 9
    elseif t == 4 and #v - pos >= 4 then
      local len = string.unpack("=I4", v, pos + 1)
      if len > #v - pos - 4 then
        return nil
      end
      items[i] = v:sub(pos + 5, pos + 4 + len)
      pos = pos + 5 + len
    else
      return nil
    end
  end
  return pos == #v + 1 and items or nil
end

-- The value of an entry of type vtype from its bytes (as dict_copyout).
local function dict_value(vtype, v)
  if vtype == 1 then
    return #v >= 1 and v:byte(1) ~= 0
  elseif vtype == 2 then
    return #v >= 8 and string.unpack("=i8", v) or 0
  elseif vtype == 3 then
    return #v >= 8 and string.unpack("=d", v) or 0.0
  elseif vtype == 4 then
    return v
  elseif vtype == 5 then
    return list_items(v)
  end
  return nil
end

local SNAPSHOT_TRIES = 50

--- Read the dictionary at offset `off` of segment `seg` (a read-only
-- attachment will do) without its handle, and without writing anything:
-- no lock, no read recorded for the LRU order. The region is copied under
-- its sequence number (again while a writer was changing it, up to 50
-- times) and every offset and length in the copy is checked as the module
-- checks them; what cannot be verified is left out and described in
-- `problems`.
-- @tparam segment seg
-- @tparam integer off the region start
-- @treturn[1] table `{ version, stats = {...}, entries = {{key, type,
--   size, flags, expire_ms, version, value}, ...} (sorted by key),
--   problems = {string,...}, consistent = boolean, now_ms }`
-- @treturn[2] nil
-- @treturn[2] string why there is no dictionary to read there
function M.read_dict(seg, off)
  local size = #seg
  if off > size or size - off < DICT.HEADER then
    return nil, sformat("no dictionary at offset %d (the segment has %d bytes)", off, size)
  end
  local what, version = holds(seg, off)
  if what ~= "dict" then
    return nil, sformat("no dictionary at offset %d%s", off,
                        what and sformat(" (it holds a %s)", what) or " (bad magic)")
  end
  if version ~= DICT.VERSION then
    return nil, sformat("the dictionary at offset %d has layout version %d; this sysvshm reads %d",
                        off, version, DICT.VERSION)
  end
  local _, _, region, nb, boff, hoff, hend, ns, soff = seg:unpack(DICT.HEAD_FMT, off)
  local g = region >= 0 and region <= size - off and dict_layout(region)
  if not g or g.nbuckets ~= nb or g.buckets_off ~= boff or g.heap_off ~= hoff or
     g.heap_end ~= hend or g.nstripes ~= ns or g.stripes_off ~= soff then
    return nil, sformat("the dictionary at offset %d is corrupt (header out of range)", off)
  end

  -- A copy of [0, top) taken between two equal, even sequence numbers.
  local snap, consistent, st
  for _ = 1, SNAPSHOT_TRIES do
    local s1 = seg:atomic_load(off + DICT.SEQ)
    st = table.pack(seg:unpack(DICT.STATE_FMT, off + DICT.STATE))
    local top = st[1]
    local len = (top % 8 == 0 and top >= g.heap_off and top <= g.heap_end) and top or g.heap_end
    snap = seg:read(off, len)
    local s2 = seg:atomic_load(off + DICT.SEQ)
    consistent = s1 == s2 and s1 & 1 == 0
    if consistent then
      break
    end
    sleep(0.001)
  end

  local problems = {}
  local function problem(fmt, ...)
    if #problems < 20 then
      problems[#problems + 1] = sformat(fmt, ...)
    end
  end
  local top = st[1]
  if not (top % 8 == 0 and top >= g.heap_off and top <= g.heap_end) then
    problem("top %d out of the heap [%d, %d]", top, g.heap_off, g.heap_end)
  end
  local max_entries = (g.heap_end - g.heap_off) // 8 + 1
  local limit = #snap

  -- The entry at eoff, or nil and why not (dict_entry's checks, and inside the copy).
  local function entry(eoff)
    if eoff % 8 ~= 0 or eoff < g.heap_off or eoff > g.heap_end - DICT.ENTRY_HEAD or
       eoff > limit - DICT.ENTRY_HEAD then
      return nil
    end
    local e = table.pack(string.unpack(DICT.ENTRY_FMT, snap, eoff + 1))
    local esize, tag, klen, vlen = e[1], e[2], e[7], e[8]
    if tag ~= DICT.ENTRY_TAG or esize % 8 ~= 0 or esize < DICT.ENTRY_HEAD or
       esize > g.heap_end - eoff or esize > limit - eoff or klen > DICT.MAX_KEY or vlen > esize or
       DICT.ENTRY_HEAD + klen + vlen > esize then
      return nil
    end
    return e
  end

  local now_ms = math.floor(shm.clock() * 1000)
  local entries, seen, count = {}, {}, 0
  local mask = nb - 1
  local CHUNK = 256
  for first = 0, nb - 1, CHUNK do
    local n = math.min(CHUNK, nb - first)
    local heads = { string.unpack("=" .. ("I4"):rep(n), snap, boff + 4 * first + 1) }
    for i = 1, n do
      local b, eoff, steps = first + i - 1, heads[i], max_entries
      while eoff ~= 0 do
        if steps == 0 or count >= max_entries then
          problem("bucket %d: the chain does not end", b)
          break
        end
        steps = steps - 1
        if seen[eoff] then
          problem("bucket %d: entry at %d reached twice (a loop or a shared chain)", b, eoff)
          break
        end
        local e = entry(eoff)
        if not e then
          problem("bucket %d: no entry at %d", b, eoff)
          break
        end
        local klen, vlen = e[7], e[8]
        local key = snap:sub(eoff + DICT.ENTRY_HEAD + 1, eoff + DICT.ENTRY_HEAD + klen)
        if e[4] & mask ~= b or dict_hash(key) ~= e[4] then
          problem("entry at %d: its hash does not match its key or bucket", eoff)
          break
        end
        seen[eoff] = true
        count = count + 1
        local vstart = eoff + DICT.ENTRY_HEAD + klen
        local vtype = e[9]
        local value = dict_value(vtype, snap:sub(vstart + 1, vstart + vlen))
        if vtype == 5 and value == nil then
          problem("entry at %d: the list value is malformed", eoff)
        elseif DICT.TYPES[vtype] == nil then
          problem("entry at %d: unknown value type %d", eoff, vtype)
        end
        entries[#entries + 1] = {
          key = key, type = DICT.TYPES[vtype] or sformat("unknown(%d)", vtype), size = vlen,
          flags = e[10], expire_ms = e[11], version = e[12], value = value, offset = eoff,
          bytes = e[1],
        }
        eoff = e[3]
      end
    end
  end
  table.sort(entries, function(a, b) return a.key < b.key end)

  local free = (g.heap_end - (top >= g.heap_off and top <= g.heap_end and top or g.heap_end))
    + math.max(0, st[8])
  local largest = free & ~7
  largest = largest > DICT.ENTRY_HEAD and largest - DICT.ENTRY_HEAD or 0
  return {
    version = version, consistent = consistent, problems = problems, entries = entries,
    now_ms = now_ms,
    stats = { entries = st[6], used = st[7], free = free, largest = largest, capacity = region,
              evictions = st[9], expirations = st[10], contention = st[11], repairs = st[12] },
  }
end

--- The order of the `stats` fields in `dict --json` (those of `d:stats()`).
M.DICT_STATS = { "entries", "used", "free", "largest", "capacity", "evictions", "expirations",
                 "contention", "repairs" }

M.DICT = DICT

return M
