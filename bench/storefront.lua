-- Workloads "proxy_hot", "proxy_spread" and "proxy_cart": what a storefront sends.
--
-- Our side gets the theme's request: POST /proxy/stock/SKU-n/reserve?<query signed as Shopify's
-- App Proxy signs it> with {"cart_token": …, "quantity": …} and the shopper's address in
-- X-Forwarded-For (Shopify sets it), so the per-cart caps and both rate limits apply. The peer
-- (no App Proxy, no carts) gets the same reservations on its POST /stock/SKU-n/reserve.
--
-- Usage: wrk -s bench/storefront.lua URL -- TOKEN MODE SIDE QUERY
--   MODE  hot (SKU-1), spread (SKU-1..1000), cart (each cart adds 1-3 units of 2-3 SKUs)
--   SIDE  ours | peer;  QUERY the signed query string (ours only)
-- hot and spread: a new cart token and a new address on every request; cart: one per cart.

local next_thread_id = 0

function setup(thread)
   thread:set("thread_id", next_thread_id)
   next_thread_id = next_thread_id + 1
end

local mode, side, query
local headers = {}
local counter = 0
local cart_lines = {}
local cart_token, cart_ip

local function address(n)
   -- 10.x.y.z, distinct per thread and counter (up to 16M per thread)
   return string.format("10.%d.%d.%d", (thread_id * 37 + math.floor(n / 65536)) % 256,
                        math.floor(n / 256) % 256, n % 256)
end

function init(args)
   mode = args[2] or "hot"
   side = args[3] or "ours"
   query = args[4] or ""
   math.randomseed(os.time() * 1000 + (thread_id or 0))
   for k, v in pairs(wrk.headers) do headers[k] = v end
   headers["Content-Type"] = "application/json"
   if side == "peer" then
      headers["Authorization"] = "Bearer " .. (args[1] or "")
   end
end

local function new_cart()
   counter = counter + 1
   cart_token = string.format("bench-%d-%d-%d", thread_id, os.time(), counter)
   cart_ip = address(counter)
end

local function next_line()
   if mode == "hot" then
      new_cart()
      return 1, 1
   elseif mode == "spread" then
      new_cart()
      return math.random(1000), 1
   end
   if #cart_lines == 0 then
      new_cart()
      local n = math.random(2, 3)
      local first = math.random(1000)
      for i = 1, n do
         cart_lines[i] = { ((first + i * 97) % 1000) + 1, math.random(1, 3) }
      end
   end
   local line = table.remove(cart_lines, 1)
   return line[1], line[2]
end

function request()
   local sku, quantity = next_line()
   if side == "peer" then
      return wrk.format("POST", "/stock/SKU-" .. sku .. "/reserve", headers,
                        '{"quantity": ' .. quantity .. '}')
   end
   headers["X-Forwarded-For"] = cart_ip
   return wrk.format("POST", "/proxy/stock/SKU-" .. sku .. "/reserve?" .. query, headers,
                     '{"cart_token": "' .. cart_token .. '", "quantity": ' .. quantity .. '}')
end
