-- Users and groups for the `sysvshm` command: names from the local passwd
-- and group files, this process's uid, and what is "mine".
local report = require "sysvshm.cli.report"

local fail = report.fail

local M = {}


-- id -> name from a passwd-like file (/etc/passwd, /etc/group); empty when
-- the file cannot be read. Only local files: names from NSS services (LDAP,
-- ...) are not looked up, and their ids are shown as numbers.
local function read_names(path)
  local names = {}
  local f = io.open(path, "r")
  if f then
    for line in f:lines() do
      local name, id = line:match("^([^:#][^:]*):[^:]*:(%d+):")
      id = id and math.tointeger(tonumber(id))
      if id and names[id] == nil then
        names[id] = name
      end
    end
    f:close()
  end
  return names
end

local users, groups

local function user_name(uid)
  users = users or read_names("/etc/passwd")
  return users[uid] or tostring(uid)
end

local function group_name(gid)
  groups = groups or read_names("/etc/group")
  return groups[gid] or tostring(gid)
end

-- The effective uid of this process (from /proc: plain Lua has no getuid).
local function euid()
  local f = io.open("/proc/self/status", "r")
  if not f then
    fail("cannot read /proc/self/status to find the user id")
  end
  local s = f:read("a")
  f:close()
  local id = s:match("\nUid:%s+%d+%s+(%d+)")
  if not id then
    fail("no Uid line in /proc/self/status")
  end
  return math.tointeger(tonumber(id))
end

local function mine(st, uid)
  return st.uid == uid or st.cuid == uid
end

M.user_name, M.group_name, M.euid, M.mine = user_name, group_name, euid, mine

return M
