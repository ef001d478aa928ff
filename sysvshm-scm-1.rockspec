rockspec_format = "3.0"
package = "sysvshm"
version = "scm-1"

source = {
  url = "git+file:///work/main", -- replaced by the public address when published
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
    ["sysvshm.cli"] = "lua/sysvshm/cli.lua",
    ["sysvshm.testing"] = "lua/sysvshm/testing.lua",
    ["sysvshm.testing.busted"] = "lua/sysvshm/testing/busted.lua",
    ["sysvshm.demo.prelude"] = "lua/demo/prelude.lua",
    ["sysvshm.demo.writer"] = "lua/demo/writer.lua",
    ["sysvshm.demo.reader"] = "lua/demo/reader.lua",
    ["sysvshm.demo.counter"] = "lua/demo/counter.lua",
    ["sysvshm.demo.pipeline"] = "lua/demo/pipeline.lua",
    ["sysvshm.demo.ratelimit"] = "lua/demo/ratelimit.lua",
    ["sysvshm.demo.record_layout"] = "lua/demo/record_layout.lua",
    ["sysvshm.demo.semwriter"] = "lua/demo/semwriter.lua",
  },
  install = {
    bin = { sysvshm = "bin/sysvshm" },
  },
}

test_dependencies = { "busted" }
test = { type = "busted" }
