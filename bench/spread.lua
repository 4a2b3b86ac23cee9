-- Workload "spread": every request reserves 1 unit of a random SKU-1..SKU-1000.
-- Usage: wrk -s bench/spread.lua http://HOST:PORT -- TOKEN

local next_thread_id = 0

-- setup() runs in wrk's main Lua state once per thread; giving each thread its
-- own id lets init() seed the RNG differently, so threads don't replay the
-- same SKU sequence in lockstep.
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
   headers["Content-Type"] = "application/json"
   headers["Authorization"] = "Bearer " .. token
   -- Pre-format all 1000 requests once so request() is just a table lookup.
   for i = 1, 1000 do
      requests[i] = wrk.format("POST", "/stock/SKU-" .. i .. "/reserve", headers,
                               '{"quantity": 1}')
   end
end

function request()
   return requests[math.random(1000)]
end
