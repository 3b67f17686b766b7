-- The ingress-nginx-like balancer: the endpoints are POSTed to
-- /configuration/backends (as ingress-nginx's controller does) and picked per
-- request, round robin, with no reload: the upstream keep-alive pool, and its
-- connections to removed pods, live on.

local ngx_balancer = require("ngx.balancer")

local endpoints = ngx.shared.endpoints
local _M = {}

-- This worker's copy of the endpoints, refreshed when their version moves.
local version, peers, turn = nil, {}, 0

-- POST /configuration/backends: a body of "ip:port" separated by spaces.
function _M.configure()
    ngx.req.read_body()
    endpoints:set("peers", ngx.req.get_body_data() or "")
    endpoints:incr("version", 1, 0)
    ngx.say("ok")
end

function _M.balance()
    local current = endpoints:get("version")
    if current ~= version then
        version, peers = current, {}
        for host, port in string.gmatch(endpoints:get("peers") or "", "([^%s:]+):(%d+)") do
            peers[#peers + 1] = { host, tonumber(port) }
        end
    end
    if #peers == 0 then
        return ngx.exit(503)
    end
    turn = turn % #peers + 1
    local ok, err = ngx_balancer.set_current_peer(peers[turn][1], peers[turn][2])
    if not ok then
        ngx.log(ngx.ERR, "set_current_peer: ", err)
        return ngx.exit(500)
    end
end

return _M
