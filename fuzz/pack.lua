-- Fuzz target "pack" (fuzz/driver.c runs it under libFuzzer): the format
-- language of seg:pack / seg:unpack and of the channel's sendpack /
-- recvunpack (src/pack.c: the format parser, shm_packcheck/shm_packwrite,
-- shm_unpack, shm_fmtcheck), with Lua's own string.pack / string.unpack as
-- the oracle.
--
-- An input is  mode .. fmt .. "\0" .. data  (no "\0": all of it is the
-- format, data is empty).  The low bit of mode picks:
--   unpack  data is written so that it ends at the segment end (a guard
--           page follows: a read past it faults); seg:unpack(fmt, off) must
--           give what string.unpack gives for the same bytes, and
--           ch:send(data) + ch:recvunpack(fmt) what string.unpack(fmt, data)
--           gives;
--   pack    values decoded from data (integers, floats, strings, numeric
--           strings, wrong types, boundary values) or, with bit 1 of mode,
--           string.unpack(fmt, data)'s own results are packed with
--           seg:pack(fmt, off, ...) near the segment end and with
--           ch:sendpack(fmt, ...); the bytes must be string.pack's, and a
--           call that fails must write (send) nothing.
-- Errors must agree in kind: the same message for format and value errors
-- (without the "bad argument #n to 'f'" wrapper, whose numbers differ);
-- "too short" for the segment's or message's end.  Any mismatch raises,
-- which the driver turns into a crash report; a sanitizer report or a fault
-- is a finding too.
local core = require "sysvshm.core"
local channel = require "sysvshm.channel"

local T = {}

local seg, ch, S
local CHAN = 32768 -- the channel's region: [0, CHAN); pack/unpack: after it

-- The message of an error without the location and without the "bad
-- argument" wrapper; string.pack says "got nil" where the module says "got
-- no value" (a missing value).
local function reason(e)
  e = tostring(e):gsub("^[^\n]-:%d+: ", "")
  e = e:match("^bad argument #%d+ to '[^']*' %((.*)%)$") or e
  return (e:gsub("got nil$", "got no value"))
end

-- The kind of an error: "short" for every wording of "the bytes (or the
-- room) end before the format does", else the reason itself.
local function kind(e)
  local r = reason(e)
  if r:find("data string too short", 1, true)
    or r:find("runs past the end of the segment", 1, true)
    or r:find("too short for format", 1, true) then
    return "short"
  end
  if r:find("unfinished string for format 'z'", 1, true) then
    return "zstr"
  end
  return r
end

-- The messages of format errors (seg:unpack and string.unpack raise them
-- where they read the bad option; recvunpack before receiving).
local function formaterror(r)
  return r:find("^integral size %(") or r:find("^invalid format option")
    or r == "missing size for format option 'c'"
    or r == "invalid next option for option 'X'"
    or r == "format asks for alignment not power of 2"
end

local function fail(fmt, what, ...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[i] = type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  error(string.format("pack fuzz: fmt %q: %s: %s", fmt, what,
    table.concat(parts, ", ")), 0)
end

-- Same type and value; floats by their bits (NaN == NaN, 0.0 ~= -0.0).
local function same(a, b)
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end
  if math.type(a) == "float" then
    return string.pack("<d", a) == string.pack("<d", b)
  end
  return a == b
end

local function same_list(a, b)
  if a.n ~= b.n then return false end
  for i = 1, a.n do
    if not same(a[i], b[i]) then return false end
  end
  return true
end

local function show(t)
  local parts = {}
  for i = 1, t.n do
    local v = t[i]
    parts[i] = type(v) == "string" and string.format("%q", v) or tostring(v)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- pcall's results as {ok, n = , ...values}
local function try(f, ...)
  local r = table.pack(pcall(f, ...))
  local ok = table.remove(r, 1)
  r.n = r.n - 1
  return ok, r
end

function T.init(segid, segsize)
  S = segsize
  seg = assert(core.attach(segid))
  assert(#seg == S and S > CHAN)
  ch = channel.new(seg, 0, CHAN)
end

-- The channel is empty between inputs (a left-over message would make the
-- next input's results depend on this one's).
local function drain(fmt)
  if ch:pending() ~= 0 then
    local m = ch:recv(0)
    fail(fmt, "a message was left in the channel", m)
  end
end

-- ---- unpack ---------------------------------------------------------------

local function check_unpack(fmt, data, shift)
  -- data ends at the segment end; string.unpack sees the same bytes from a
  -- 16-aligned base (alignment is relative to position 0 in both)
  local off = S - #data
  seg:write(off, data)
  local base = off - off % 16
  local bytes = seg:read(base)
  local pos = off + shift % (#data + 1) -- sometimes from inside data

  local sok, sr = try(string.unpack, fmt, bytes, pos - base + 1)
  local gok, gr = try(seg.unpack, seg, fmt, pos)
  if sok ~= gok then
    fail(fmt, "seg:unpack and string.unpack disagree on success", data, pos,
      show(sr), show(gr))
  end
  if sok then
    gr[gr.n] = gr[gr.n] - base + 1 -- 0-based offset -> position in bytes
    if not same_list(sr, gr) then
      fail(fmt, "seg:unpack results differ", data, pos, show(sr), show(gr))
    end
  elseif kind(sr[1]) ~= kind(gr[1]) then
    fail(fmt, "seg:unpack errors differ", data, pos, sr[1], gr[1])
  end

  -- the channel: alignment relative to the message start, as in data
  if #data > ch:maxsize() then return end
  assert(ch:send(data, 0))
  sok, sr = try(string.unpack, fmt, data)
  gok, gr = try(ch.recvunpack, ch, fmt, 0)
  if sok ~= gok then
    fail(fmt, "recvunpack and string.unpack disagree on success", data,
      show(sr), show(gr))
  end
  if sok then
    if not same_list(sr, gr) then
      fail(fmt, "recvunpack results differ", data, show(sr), show(gr))
    end
  else
    local sk, gk = kind(sr[1]), kind(gr[1])
    if formaterror(gk) then
      -- checked before receiving: string.unpack may have met the end of
      -- the bytes (or an unfinished 'z', a wide integer) first
      if sk ~= gk and formaterror(sk) then
        fail(fmt, "recvunpack and string.unpack find other format errors",
          data, sr[1], gr[1])
      end
      local m = ch:recv(0)
      if m ~= data then
        fail(fmt, "recvunpack with a bad format took the message", data, m)
      end
    elseif sk ~= gk then
      fail(fmt, "recvunpack errors differ", data, sr[1], gr[1])
    end
  end
  drain(fmt)
end

-- ---- pack -----------------------------------------------------------------

-- Values decoded from bytes: a tag byte, then what the tag needs.
local specials = {
  function() return nil end,
  function() return true end,
  function() return {} end,
  function() return 2^63 end,
  function() return -2^63 end,
  function() return math.mininteger end,
  function() return math.maxinteger end,
  function() return -0.0 end,
  function() return 0/0 end,
  function() return 1/0 end,
  function() return -1/0 end,
  function() return 3.5 end,
  function() return "" end,
  function() return "\0" end,
  function() return "0x7fffffffffffffff" end,
  function() return "1e100" end,
}

local function decode_values(data)
  local vals, i, n = {}, 1, 0
  while i <= #data and n < 24 do
    local t = data:byte(i)
    i = i + 1
    local v
    local k = t % 8
    if k == 0 then
      local bytes = data:sub(i, i + 7) .. ("\0"):rep(8)
      v = string.unpack("<i8", bytes)
      i = i + 8
    elseif k == 1 then
      v = string.unpack("b", data:sub(i, i) .. "\0")
      i = i + 1
    elseif k == 2 then
      local bytes = data:sub(i, i + 7) .. ("\0"):rep(8)
      v = string.unpack("<d", bytes)
      i = i + 8
    elseif k == 3 then
      v = (t >> 3) + 0.0
    elseif k == 4 then
      local len = data:byte(i) or 0
      v = data:sub(i + 1, i + len)
      i = i + 1 + len
    elseif k == 5 then
      v = tostring((t >> 3) - 16)
    elseif k == 6 then
      v = specials[(t >> 3) % #specials + 1]()
    else -- near a power of two: integer limits of every size
      local bits = (t >> 3) % 32 * 2 + 1 -- odd: 1..63
      local delta = (data:byte(i) or 0) % 5 - 2
      i = i + 1
      v = (1 << bits) + delta
      if t & 0x80 ~= 0 then v = -v end
    end
    n = n + 1
    vals[n] = v
  end
  vals.n = n
  return vals
end

local function check_pack(fmt, vals, mode)
  -- at an offset near the segment end with a residue k mod 16; string.pack
  -- gets k bytes more in front ("ck " first) so that alignment agrees
  local room = (1 << (mode >> 2) % 16) + (mode >> 6) * 5 -- bytes to the end
  if room > S - CHAN then room = S - CHAN end
  local off = S - room
  local k = off % 16
  local before = seg:read(off)

  local sok, sr = try(string.pack, "c" .. k .. " " .. fmt, ("\0"):rep(k),
    table.unpack(vals, 1, vals.n))
  local gok, gr = try(seg.pack, seg, fmt, off, table.unpack(vals, 1, vals.n))
  if gok then
    if not sok then
      fail(fmt, "seg:pack succeeded where string.pack failed", show(vals),
        sr[1])
    end
    local p = sr[1]:sub(k + 1)
    if gr[1] ~= off + #p then
      fail(fmt, "seg:pack returned a wrong offset", show(vals), off + #p,
        gr[1])
    end
    if seg:read(off, #p) ~= p then
      fail(fmt, "seg:pack wrote other bytes", show(vals), p,
        seg:read(off, #p))
    end
    if seg:read(off + #p) ~= before:sub(#p + 1) then
      fail(fmt, "seg:pack wrote past its end", show(vals))
    end
  else
    if seg:read(off) ~= before then
      fail(fmt, "a failed seg:pack wrote", show(vals), gr[1])
    end
    local gk = kind(gr[1])
    if gk == "short" then
      -- the first item that does not fit; string.pack fails no earlier
      if sok and #sr[1] - k <= room then
        fail(fmt, "seg:pack found no room for what fits", show(vals),
          #sr[1] - k, room)
      end
    elseif sok or kind(sr[1]) ~= gk then
      fail(fmt, "seg:pack and string.pack fail differently", show(vals),
        sok and "ok" or sr[1], gr[1])
    end
  end

  -- the channel: sendpack takes exactly the format's values (an extra one
  -- would be its timeout), so find how many string.pack uses
  sok, sr = try(string.pack, fmt, table.unpack(vals, 1, vals.n))
  local n = vals.n
  if sok then
    for m = 0, vals.n do
      if pcall(string.pack, fmt, table.unpack(vals, 1, m)) then
        n = m
        break
      end
    end
  end
  gok, gr = try(ch.sendpack, ch, fmt, table.unpack(vals, 1, n))
  if gok then
    if not sok then
      fail(fmt, "sendpack succeeded where string.pack failed", show(vals),
        sr[1])
    end
    if gr[1] ~= true then
      fail(fmt, "sendpack did not send", show(vals), gr[1], gr[2])
    end
    local m = ch:recv(0)
    if m ~= sr[1] then
      fail(fmt, "sendpack sent other bytes", show(vals), sr[1], m)
    end
  else
    local gk = reason(gr[1])
    if sok then
      if not (gk:find("larger than the channel accepts", 1, true)
          and #sr[1] > ch:maxsize()) then
        fail(fmt, "sendpack failed where string.pack did not", show(vals),
          gr[1])
      end
    elseif n == vals.n and kind(sr[1]) ~= kind(gr[1]) then
      fail(fmt, "sendpack and string.pack fail differently", show(vals),
        sr[1], gr[1])
    end
  end
  drain(fmt)
end

function T.one(input)
  if #input == 0 then return end
  local mode = input:byte(1)
  local rest = input:sub(2)
  local z = rest:find("\0", 1, true)
  local fmt, data
  if z then
    fmt, data = rest:sub(1, z - 1), rest:sub(z + 1)
  else
    fmt, data = rest, ""
  end
  if #data > S - CHAN then data = data:sub(1, S - CHAN) end

  if mode & 1 == 0 then
    check_unpack(fmt, data, mode >> 1)
  else
    -- string.pack("c100000000", "") would build a string of that size
    local total = 0
    for d in fmt:gmatch("%d+") do
      if #d > 7 then return end
      total = total + tonumber(d)
    end
    if total > 1000000 then return end
    local vals
    if mode & 2 ~= 0 then
      local ok, r = try(string.unpack, fmt, data)
      if not ok then return end
      r.n = r.n - 1 -- the position
      vals = r
    else
      vals = decode_values(data)
    end
    check_pack(fmt, vals, mode)
  end
end

return T
