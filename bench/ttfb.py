#!/usr/bin/env python3
"""Time to the first streamed NDJSON line, for bench/run.sh (case E).

    ttfb.py HOST PORT COUNT PATH BODY

Sends COUNT streamed requests one after another on one keep-alive HTTP/1.1 connection. For each,
times from just before the request is written to the moment the first complete NDJSON line
(`...}\\n`) of the body has arrived, then reads the rest of the (chunked) answer. Prints
`TTFB count=N p50_us=.. p90_us=.. min_us=..`. The client's own cost is the same whatever is
in front of the backend, so the figure that matters is the difference between two targets.
"""

import socket
import statistics
import sys
import time


def main():
    host, port, count, path, body = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    body = body.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(count):
        buf = b""
        start = time.perf_counter()
        sock.sendall(request)
        first = None
        while True:
            data = sock.recv(65536)
            if not data:
                sys.exit("ttfb.py: connection closed mid-answer")
            buf += data
            head = buf.find(b"\r\n\r\n")
            if first is None and head >= 0 and buf.find(b"}\n", head) >= 0:
                first = time.perf_counter() - start
            if head >= 0 and first is not None and buf.endswith(b"\r\n0\r\n\r\n"):
                break
        if not buf.startswith(b"HTTP/1.1 200"):
            sys.exit("ttfb.py: not a 200: " + buf[:200].decode(errors="replace"))
        if b"chunked" not in buf[:head].lower():
            sys.exit("ttfb.py: the answer is not chunked")
        times.append(first * 1e6)
    sock.close()
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(
        f"TTFB count={len(times)} p50_us={statistics.median(times):.1f} p90_us={p90:.1f} "
        f"min_us={times[0]:.1f}"
    )


if __name__ == "__main__":
    main()
