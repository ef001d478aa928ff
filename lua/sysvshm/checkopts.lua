--- The check of an options table given to a Lua function of the library
-- (the C functions have `shmL_checkopts`): every key must be one the
-- function knows, or it raises, naming the key and the options there are,
-- as the C functions do. Internal: for `sysvshm.dict` and `sysvshm.testing`.
-- @module sysvshm.checkopts

--- Raise, as the caller's caller, unless opts is nil or a table whose keys
-- are all in `known` (a set of names).
-- @param opts the options argument
-- @tparam table known `{name = true, ...}`
-- @tparam integer arg its position, for the message
-- @tparam string fname the function's name, for the message
return function(opts, known, arg, fname)
  if opts == nil then return end
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(arg, fname, type(opts)), 3)
  end
  for k in next, opts do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(("bad argument #%d to '%s' (unknown option '%s'; the options are: %s)"):format(
        arg, fname, tostring(k), #names > 0 and table.concat(names, ", ") or "none"), 3)
    end
  end
end
