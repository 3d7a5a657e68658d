-- wrk script of `make loadtest`: POST /orders with a valid order.
wrk.method = "POST"
wrk.path = "/orders"
wrk.body = '{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}'
wrk.headers["Content-Type"] = "application/json"
