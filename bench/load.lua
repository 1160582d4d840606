-- bench/load.lua: the GET side of bench/load.py, for wrk (Debian package wrk, 4.1).
--
--   wrk -t2 -c32 -d60s --latency --timeout 10s -s bench/load.lua http://127.0.0.1:PORT \
--       -- TOKEN [PATHS]
--
-- Every request is a GET with "Authorization: Bearer TOKEN". The paths are rotated round-robin
-- (each thread starts at a different offset): the lines of the file PATHS (blank lines and lines
-- starting with # are skipped; a path listed twice is requested twice as often), or DEFAULT_PATHS
-- below.
--
-- done() prints, after wrk's own report, machine-readable lines that bench/load.py parses:
--   LOAD summary requests=N duration_us=N bytes=N connect=N read=N write=N status=N timeout=N
--   LOAD latency_us p50=N p90=N p99=N p999=N max=N mean=N stdev=N
--   LOAD status CODE=N ...          every HTTP status seen, summed over the threads
--   LOAD bad STATUS BODY            the first few non-2xx replies but 404 (truncated bodies)

local DEFAULT_PATHS = {
   "/api/v1/settings",
   "/api/v1/tls-policies",
   "/api/v1/tls-policies?limit=50",
   "/api/v1/tls-policies?level=encrypt&limit=20",
   "/api/v1/certificates",
   "/api/v1/status",
   "/api/v1/jobs",
   "/api/v1/jobs?limit=20",
   "/healthz",
   "/metrics",
}

local threads = {}

-- main Lua state: one call per thread, before init()
function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_no", #threads)
end

local function read_paths(file)
   local out = {}
   local f = io.open(file, "r")
   if not f then
      error("load.lua: cannot open path file " .. file)
   end
   for line in f:lines() do
      line = line:gsub("^%s+", ""):gsub("%s+$", "")
      if line ~= "" and line:sub(1, 1) ~= "#" then
         table.insert(out, line)
      end
   end
   f:close()
   if #out == 0 then
      error("load.lua: no paths in " .. file)
   end
   return out
end

-- each thread's own Lua state
function init(args)
   local token = args[1]
   if not token or token == "" then
      error("load.lua: pass the bearer token after --: wrk ... URL -- TOKEN [PATHS]")
   end
   local paths = DEFAULT_PATHS
   if args[2] and args[2] ~= "" then
      paths = read_paths(args[2])
   end
   local headers = { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/json" }
   requests_ = {}
   for i, p in ipairs(paths) do
      requests_[i] = wrk.format("GET", p, headers)
   end
   -- different start offsets so that the threads do not request the same path at the same moment
   counter_ = ((thread_no or 1) - 1) * 7
   statuses = {}   -- status -> count, fetched by done() through thread:get
   bad = {}        -- a few "STATUS BODY" samples of unexpected replies
end

function request()
   counter_ = counter_ + 1
   return requests_[(counter_ % #requests_) + 1]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   -- 404 is left out: bench/load.py asks for one missing row on purpose
   if (status < 200 or status > 299) and status ~= 404 and #bad < 5 then
      local b = tostring(body or ""):sub(1, 300):gsub("[\r\n]", " ")
      table.insert(bad, tostring(status) .. " " .. b)
   end
end

-- main Lua state, once, after the run
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("LOAD summary requests=%d duration_us=%d bytes=%d connect=%d read=%d "
                             .. "write=%d status=%d timeout=%d\n",
                          summary.requests, summary.duration, summary.bytes, e.connect, e.read,
                          e.write, e.status, e.timeout))
   io.write(string.format("LOAD latency_us p50=%d p90=%d p99=%d p999=%d max=%d mean=%.1f "
                             .. "stdev=%.1f\n",
                          latency:percentile(50), latency:percentile(90), latency:percentile(99),
                          latency:percentile(99.9), latency.max, latency.mean, latency.stdev))
   local total = {}
   local samples = {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses") or {}
      for code, n in pairs(s) do
         total[code] = (total[code] or 0) + n
      end
      for _, line in ipairs(t:get("bad") or {}) do
         if #samples < 10 then
            table.insert(samples, line)
         end
      end
   end
   local parts = {}
   for code, n in pairs(total) do
      table.insert(parts, string.format("%d=%d", code, n))
   end
   table.sort(parts)
   io.write("LOAD status " .. table.concat(parts, " ") .. "\n")
   for _, line in ipairs(samples) do
      io.write("LOAD bad " .. line .. "\n")
   end
end
