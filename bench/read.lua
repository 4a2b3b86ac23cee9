-- Workload "read": GET /stock/SKU-{random 1..1000}.
-- Usage: wrk -s bench/read.lua http://HOST:PORT -- TOKEN

local next_thread_id = 0

-- One id per wrk thread so each thread seeds its RNG differently.
function setup(thread)
   thread:set("thread_id", next_thread_id)
   next_thread_id = next_thread_id + 1
end

local requests = {}

function init(args)
   local token = args[1] or ""
   math.randomseed(os.time() * 1000 + (thread_id or 0))
   local headers = {}
   for k, v in pairs(wrk.headers) do headers[k] = v end
   headers["Authorization"] = "Bearer " .. token
   -- Pre-format all 1000 requests once so request() is just a table lookup.
   for i = 1, 1000 do
      requests[i] = wrk.format("GET", "/stock/SKU-" .. i, headers, nil)
   end
end

function request()
   return requests[math.random(1000)]
end
