-- bench/compare.lua: counts the HTTP statuses of a wrk run for bench/compare.py (wrk 4.1).
--
--   wrk -t2 -c64 -d10s --latency -s bench/compare.lua -H 'Authorization: Bearer TOKEN' URL \
--       [-- count]
--
-- The request is wrk's own (the URL and the -H headers, built once): this script defines no
-- request(), so the request side costs nothing. With the argument "count", response() counts
-- every status; without it, response is removed in init() (wrk asks whether there is one after
-- init), so wrk neither copies headers and bodies nor calls Lua per reply - on 2 CPUs that copy
-- of a 30 KB body costs the client ~15% of nginx's rate - and only wrk's own count of statuses
-- above 399 is there (summary status=). done() prints, after wrk's own report, lines that
-- bench/compare.py parses:
--   COMPARE summary requests=N duration_us=N bytes=N connect=N read=N write=N status=N timeout=N
--   COMPARE latency_us p50=N p99=N p999=N max=N
--   COMPARE status CODE=N ...       every HTTP status seen, summed over the threads ("count"
--                                   only; else the line is empty)

local threads = {}

-- main Lua state: one call per thread, before init()
function setup(thread)
   table.insert(threads, thread)
end

-- each thread's own Lua state
function init(args)
   statuses = {}   -- status -> count, fetched by done() through thread:get
   if args[1] ~= "count" then
      response = nil
   end
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

-- main Lua state, once, after the run
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("COMPARE summary requests=%d duration_us=%d bytes=%d connect=%d "
                             .. "read=%d write=%d status=%d timeout=%d\n",
                          summary.requests, summary.duration, summary.bytes, e.connect, e.read,
                          e.write, e.status, e.timeout))
   io.write(string.format("COMPARE latency_us p50=%d p99=%d p999=%d max=%d\n",
                          latency:percentile(50), latency:percentile(99),
                          latency:percentile(99.9), latency.max))
   local total = {}
   for _, t in ipairs(threads) do
      for code, n in pairs(t:get("statuses") or {}) do
         total[code] = (total[code] or 0) + n
      end
   end
   local parts = {}
   for code, n in pairs(total) do
      table.insert(parts, string.format("%d=%d", code, n))
   end
   table.sort(parts)
   io.write("COMPARE status " .. table.concat(parts, " ") .. "\n")
end
