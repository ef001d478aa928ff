rockspec_format = "3.0"
package = "sysvshm"
version = "scm-1"

-- A placeholder until the project is published: its public address goes
-- here. `luarocks make` builds from the checkout it runs in and never reads it.
source = {
  url = "git+https://example.invalid/sysvshm.git",
}

description = {
  summary = "System V shared memory for Lua 5.4",
  detailed = [[
shmget, shmat, shmdt and shmctl for Lua 5.4, with attached segments as
bounds-checked userdata that read and write bytes, strings and typed values.
No access outside a segment, ever; no system call per read or write.
]],
  license = "MIT",
  labels = { "ipc", "shared-memory", "sysv" },
}

supported_platforms = { "linux" }

dependencies = {
  "lua >= 5.4",
}

build = {
  type = "builtin",
  modules = {
    ["sysvshm.core"] = {
      sources = { "src/core.c", "src/lock.c", "src/segment.c", "src/pack.c", "src/sync.c", "src/channel.c",
                  "src/dict.c", "src/dict_store.c", "src/sem.c" },
      defines = { "_GNU_SOURCE" },
    },
    ["sysvshm"] = "lua/sysvshm/init.lua",
    ["sysvshm.channel"] = "lua/sysvshm/channel.lua",
    ["sysvshm.dict"] = "lua/sysvshm/dict.lua",
    ["sysvshm.sem"] = "lua/sysvshm/sem.lua",
    ["sysvshm.layout"] = "lua/sysvshm/layout.lua",
    ["sysvshm.cdef"] = "lua/sysvshm/cdef.lua",
    ["sysvshm.options"] = "lua/sysvshm/options.lua",
    ["sysvshm.checkopts"] = "lua/sysvshm/checkopts.lua",
    ["sysvshm.cli"] = "lua/sysvshm/cli.lua",
    ["sysvshm.cli.args"] = "lua/sysvshm/cli/args.lua",
    ["sysvshm.cli.dict_reader"] = "lua/sysvshm/cli/dict_reader.lua",
    ["sysvshm.cli.fields"] = "lua/sysvshm/cli/fields.lua",
    ["sysvshm.cli.format"] = "lua/sysvshm/cli/format.lua",
    ["sysvshm.cli.ipc"] = "lua/sysvshm/cli/ipc.lua",
    ["sysvshm.cli.report"] = "lua/sysvshm/cli/report.lua",
    ["sysvshm.cli.users"] = "lua/sysvshm/cli/users.lua",
    ["sysvshm.cli.commands.demo"] = "lua/sysvshm/cli/commands/demo.lua",
    ["sysvshm.cli.commands.dict"] = "lua/sysvshm/cli/commands/dict.lua",
    ["sysvshm.cli.commands.dump"] = "lua/sysvshm/cli/commands/dump.lua",
    ["sysvshm.cli.commands.ls"] = "lua/sysvshm/cli/commands/ls.lua",
    ["sysvshm.cli.commands.new"] = "lua/sysvshm/cli/commands/new.lua",
    ["sysvshm.cli.commands.rm"] = "lua/sysvshm/cli/commands/rm.lua",
    ["sysvshm.cli.commands.stat"] = "lua/sysvshm/cli/commands/stat.lua",
    ["sysvshm.cli.commands.watch"] = "lua/sysvshm/cli/commands/watch.lua",
    ["sysvshm.testing"] = "lua/sysvshm/testing.lua",
    ["sysvshm.testing.busted"] = "lua/sysvshm/testing/busted.lua",
  },
  install = {
    bin = { sysvshm = "bin/sysvshm" },
    -- The demo scripts (not modules: `sysvshm demo NAME` runs them), their
    -- prelude and the example layout file, beside the modules in
    -- sysvshm/demo/, where `make install` puts them too.
    lua = {
      ["sysvshm.demo.prelude"] = "lua/demo/prelude.lua",
      ["sysvshm.demo.writer"] = "lua/demo/writer.lua",
      ["sysvshm.demo.reader"] = "lua/demo/reader.lua",
      ["sysvshm.demo.counter"] = "lua/demo/counter.lua",
      ["sysvshm.demo.pipeline"] = "lua/demo/pipeline.lua",
      ["sysvshm.demo.ratelimit"] = "lua/demo/ratelimit.lua",
      ["sysvshm.demo.record_layout"] = "lua/demo/record_layout.lua",
      ["sysvshm.demo.semwriter"] = "lua/demo/semwriter.lua",
    },
  },
}

-- `luarocks test` runs `make test`: the in-tree build, then the specs with
-- busted for Lua 5.4 (.busted sets the paths and the helper).  A command,
-- not luarocks' busted type, which wants the busted *rock* for Lua 5.4 and
-- so fails offline where busted comes from the system (Debian's
-- lua-busted, the README's install command).  Needs make, a C compiler
-- and busted on PATH.
test = { type = "command", command = "make test" }
