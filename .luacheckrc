-- luacheck configuration (tools/check.sh runs `luacheck lua spec bench`).
std = "lua54"
max_line_length = 120

-- the busted specs: describe, it, assert, pending, ...
files["spec/"] = { std = "+busted" }

-- nginx's Lua (LuaJIT, ngx.* API): the ngx.shared.DICT peer of bench W9
files["bench/ngx/"] = { std = "luajit+ngx_lua" }
