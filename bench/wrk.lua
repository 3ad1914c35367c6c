-- wrk script for bench/run.sh: one fixed POST, and a machine-readable summary.
--   BENCH_PATH  request path and query (default /api/generate)
--   BENCH_BODY  JSON body (default a streamed generate request)
-- The request is static (no request()/response() callbacks), so wrk stays on its fast path.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/api/generate"
wrk.body = os.getenv("BENCH_BODY") or '{"model":"bench","prompt":"hi"}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d p50_us=%d p99_us=%d mean_us=%.1f\n",
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean))
end
