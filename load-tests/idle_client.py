#!/usr/bin/env python3
"""Idle TLS keep-alive connections against one server, with its RSS sampled at each step.

Opens connections in steps (e.g. 1000, 5000, 10000 in total) to 127.0.0.1:PORT over TLS. Each
connection sends one request (HTTP/1.1, or HTTP/2 negotiated by ALPN), reads the whole answer
and then stays open without sending anything. After each step the client waits SETTLE seconds,
then samples the RSS of the server processes (PIDs), and counts how many of its connections the
server still holds. Then it closes every connection, waits AFTER seconds and samples again.

Output: one JSON object per line (`{"step": ...}`), read by idle_connections.sh.
Only the Python standard library is used; only 127.0.0.1 is contacted; counts are bounded.
"""

import argparse
import asyncio
import json
import ssl
import struct
import sys
import time

MAX_CONNECTIONS = 20000

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Frame types and flags used here.
DATA, HEADERS, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x4, 0x6, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def rss_kib(pids):
    """Sum of VmRSS over the server processes, in KiB (None if one is gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            return None
    return total


class Conn:
    def __init__(self):
        self.reader = None
        self.writer = None
        self.task = None
        self.closed_by_server = False


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def h2_request_block(host, path):
    """HPACK header block: indexed :method GET, :scheme https; literal :path and :authority."""

    def literal_indexed_name(index, value):
        v = value.encode()
        assert index < 15 and len(v) < 127
        return bytes([index, len(v)]) + v  # literal without indexing, indexed name

    block = bytes([0x82, 0x87])  # :method GET, :scheme https
    block += bytes([0x84]) if path == "/" else literal_indexed_name(4, path)
    block += literal_indexed_name(1, host)
    return block


async def read_frame(reader):
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    ftype, flags = head[3], head[4]
    stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
    payload = await reader.readexactly(length) if length else b""
    return ftype, flags, stream, payload


async def h1_exchange(reader, writer, host, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: idle-client\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        raise RuntimeError("response without length on a keep-alive connection")
    return status


async def h2_exchange(reader, writer, host, path):
    writer.write(H2_PREFACE + h2_frame(SETTINGS, 0, 0))
    writer.write(h2_frame(HEADERS, END_HEADERS | END_STREAM, 1, h2_request_block(host, path)))
    await writer.drain()
    status = None
    while True:
        ftype, flags, stream, payload = await read_frame(reader)
        if ftype == SETTINGS and not flags & ACK:
            writer.write(h2_frame(SETTINGS, ACK, 0))
        elif ftype == PING and not flags & ACK:
            writer.write(h2_frame(PING, ACK, 0, payload))
        elif ftype == GOAWAY:
            raise RuntimeError("GOAWAY before the answer")
        elif ftype == HEADERS and stream == 1:
            # Both nginx and Pingora (h2 crate) send ":status 200" as the static index 8.
            status = 200 if payload[:1] == b"\x88" else 0
            if flags & END_STREAM:
                break
        elif ftype == DATA and stream == 1 and flags & END_STREAM:
            break
    await writer.drain()
    return status


async def idle_reader(conn, proto):
    """Wait on the idle connection; answer HTTP/2 pings; note when the server closes it."""
    try:
        if proto == "h2":
            while True:
                ftype, flags, _, payload = await read_frame(conn.reader)
                if ftype == PING and not flags & ACK:
                    conn.writer.write(h2_frame(PING, ACK, 0, payload))
                elif ftype == GOAWAY:
                    break
        else:
            await conn.reader.read(1)
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    except asyncio.CancelledError:
        return
    conn.closed_by_server = True


async def open_one(args, ctx, conns, errors):
    conn = Conn()
    try:
        conn.reader, conn.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, server_hostname=args.sni),
            timeout=60,
        )
        exchange = h2_exchange if args.proto == "h2" else h1_exchange
        status = await asyncio.wait_for(exchange(conn.reader, conn.writer, args.sni, args.path), 60)
        if not 200 <= (status or 0) < 300:
            errors["status"] = errors.get("status", 0) + 1
    except Exception as e:  # noqa: BLE001 - every failure is counted and reported
        name = type(e).__name__
        errors[name] = errors.get(name, 0) + 1
        if conn.writer:
            conn.writer.close()
        return
    conn.task = asyncio.create_task(idle_reader(conn, args.proto))
    conns.append(conn)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--proto", choices=["h1", "h2"], default="h1")
    p.add_argument("--steps", default="1000,5000,10000", help="cumulative connection counts")
    p.add_argument("--pids", default="", help="comma-separated server PIDs whose RSS is summed")
    p.add_argument("--settle", type=float, default=3.0)
    p.add_argument("--after", type=float, default=30.0, help="seconds to wait after closing")
    p.add_argument("--parallel", type=int, default=64, help="handshakes in flight")
    p.add_argument("--sni", default="localhost")
    p.add_argument("--path", default="/")
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s]
    if not steps or max(steps) > MAX_CONNECTIONS:
        sys.exit(f"steps must be 1..{MAX_CONNECTIONS}")
    pids = [int(x) for x in args.pids.split(",") if x]

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"] if args.proto == "h2" else ["http/1.1"])

    def emit(**kw):
        print(json.dumps(kw), flush=True)

    emit(step="idle", rss_kib=rss_kib(pids), t=time.time())
    conns, errors = [], {}
    sem = asyncio.Semaphore(args.parallel)

    async def bounded():
        async with sem:
            await open_one(args, ctx, conns, errors)

    for target in steps:
        started = time.time()
        await asyncio.gather(*(bounded() for _ in range(target - len(conns) - sum(errors.values()))))
        opened_in = time.time() - started
        await asyncio.sleep(args.settle)
        open_now = sum(1 for c in conns if not c.closed_by_server)
        emit(step="open", target=target, open=open_now, opened=len(conns), errors=dict(errors),
             rss_kib=rss_kib(pids), open_seconds=round(opened_in, 1), t=time.time())

    for c in conns:
        if c.task:
            c.task.cancel()
        c.writer.close()
    await asyncio.gather(*(c.task for c in conns if c.task), return_exceptions=True)
    closed_at = time.time()
    emit(step="closed", rss_kib=rss_kib(pids), t=closed_at)
    await asyncio.sleep(args.after)
    emit(step="after", seconds=args.after, rss_kib=rss_kib(pids), t=time.time())


if __name__ == "__main__":
    asyncio.run(main())
