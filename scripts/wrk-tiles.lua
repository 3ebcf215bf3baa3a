-- wrk script for the cached-tile load test: cycles through the tile paths listed in the file
-- given after `--`, asking for gzip as MapLibre does. Each thread starts at its own offset.
local paths = {}
local i = 0

function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then paths[#paths + 1] = line end
    end
    i = math.random(#paths)
end

function request()
    i = i % #paths + 1
    return wrk.format("GET", paths[i], { ["Accept-Encoding"] = "gzip" })
end

function done(summary, latency, requests)
    io.write(string.format("tiles/s: %.0f, p50 %.2f ms, p99 %.2f ms, errors %d (non-2xx %d)\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
        latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read + summary.errors.write
        + summary.errors.timeout, summary.errors.status))
end
