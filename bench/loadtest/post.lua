-- wrk script of `make loadtest`: POST /orders with a valid order, for one
-- user ("user123", USERS unset or 1) or for USERS users taken at random.
wrk.method = "POST"
wrk.path = "/orders"
wrk.headers["Content-Type"] = "application/json"
local users = tonumber(os.getenv("USERS") or "1") or 1
local items = '"items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}'
wrk.body = '{"user_id":"user123",' .. items

request = function()
  if users <= 1 then
    return wrk.format()
  end
  return wrk.format(nil, nil, nil, '{"user_id":"user' .. math.random(users) .. '",' .. items)
end
