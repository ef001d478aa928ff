-- How the `sysvshm` command reports: the failures commands raise (status
-- 1, or 2 with the usage) and standard output, checked on every write.
local M = {}

M.PROG = "sysvshm"

local sformat, concat = string.format, table.concat

-- ---- failures ----------------------------------------------------------------

-- Commands raise these tables; `main` turns them into a message and a status.
-- A usage error (status 2) shows the usage of `parser` too.
local Failure = {}
M.Failure = Failure

local function fail(fmt, ...)
  error(setmetatable({ status = 1, message = sformat(fmt, ...) }, Failure), 0)
end

local function usage_error(parser, fmt, ...)
  error(setmetatable({ status = 2, message = sformat(fmt, ...), parser = parser }, Failure), 0)
end

-- ---- standard output ---------------------------------------------------------------

-- Everything goes to standard output through `emit`, and every command's
-- output is flushed before it counts as done (`flush_out`, and `main` once
-- more at the end): output that cannot be written (a full disk, /dev/full,
-- a closed descriptor) is a failure, status 1, never a silent success.
local function emit(...)
  local ok, err = io.stdout:write(...)
  if not ok then
    fail("cannot write the output: %s", tostring(err))
  end
end

local function flush_out()
  local ok, err = io.stdout:flush()
  if not ok then
    fail("cannot write the output: %s", tostring(err))
  end
end

-- Lines, each ended with a newline (nothing for none).
local function emit_lines(lines)
  if #lines > 0 then
    emit(concat(lines, "\n"), "\n")
  end
end

M.fail, M.usage_error, M.emit, M.emit_lines, M.flush_out = fail, usage_error, emit, emit_lines, flush_out

return M
