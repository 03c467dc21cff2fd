wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"bench"},"password":"bench-password"}'
