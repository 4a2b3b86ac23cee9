-- Workload "hot": every request reserves 1 unit of SKU-1, so all load lands
-- on one row/lock. Usage: wrk -s bench/hot.lua http://HOST:PORT -- TOKEN
--
-- No request() hook on purpose: without it wrk sends one pre-formatted request
-- and spends no Lua time per request, which matters because wrk shares the
-- machine's two cores with the servers under test.

function init(args)
   local token = args[1] or ""
   wrk.method = "POST"
   wrk.path = "/stock/SKU-1/reserve"
   wrk.body = '{"quantity": 1}'
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. token
end
