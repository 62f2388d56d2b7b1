#!/usr/bin/env python3
"""Interop peer on Python `websockets` (15.x, asyncio API). Same CLI and output as node-peer.js;
see Tests/Peers/README.md.

  server [--deflate] [--protocol NAME] [--max-payload N] [--max-seconds S]
    Listens on 127.0.0.1:<ephemeral>, prints `LISTENING <port>` on stdout, echoes every message
    (text as text, binary as binary) except the text commands ping:<p>, close:<code>:<reason>,
    fragments:<n>:<text>, headers, info. Exits on stdin EOF or after --max-seconds (default 120).

  client --url ws://127.0.0.1:P/path [--deflate] [--protocol X] [--check-commands] [--max-seconds S]
    Runs the scripted exchange and prints one line `RESULT {json}`; exit 0 if ok, 1 if not.
"""
import argparse, asyncio, json, logging, ssl, sys, threading

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

UNICODE = ["κόσμε", "Hello, 世界", "😀🎉🚀", "Ünïcödé ß", "مرحبا بالعالم",
           "שלום", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "a\u0000b", "", "mixed ascii + é + 🙂 + 中"]


def log(*a):
    print("[python-peer]", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ server

async def send_fragments(ws, text, n):
    # ws.send(iterable) always appends an empty final frame; to send exactly n frames (split on
    # code points, like node-peer) write them through the protocol layer in one send context,
    # so no other send can interleave.
    n = max(1, n)
    pieces = [text[i * len(text) // n:(i + 1) * len(text) // n] for i in range(n)]
    async with ws.send_context():
        for i, piece in enumerate(pieces):
            fin = i == n - 1
            if i == 0:
                ws.protocol.send_text(piece.encode(), fin=fin)
            else:
                ws.protocol.send_continuation(piece.encode(), fin=fin)


async def pong_then_report(ws, payload):
    try:
        await (await ws.ping(payload))
        await ws.send("pong:" + payload)
    except ConnectionClosed:
        pass


async def handler(ws):
    log("connection", ws.request.path, ws.request.headers.get("Sec-WebSocket-Extensions", ""))
    tasks = set()
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                await ws.send(msg)
            elif msg.startswith("ping:"):
                t = asyncio.create_task(pong_then_report(ws, msg[5:]))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            elif msg.startswith("close:") and msg.count(":") >= 2 and msg.split(":")[1].isdigit():
                _, code, reason = msg.split(":", 2)
                await ws.close(int(code), reason)
            elif msg.startswith("fragments:") and msg.count(":") >= 2 and msg.split(":")[1].isdigit():
                _, n, text = msg.split(":", 2)
                await send_fragments(ws, text, int(n))
            elif msg == "headers":
                headers = {}
                for name, value in ws.request.headers.raw_items():
                    name = name.lower()
                    headers[name] = headers[name] + ", " + value if name in headers else value
                await ws.send(json.dumps(headers))
            elif msg == "info":
                await ws.send(json.dumps({"protocol": ws.subprotocol,
                                          "extensions": ws.response.headers.get("Sec-WebSocket-Extensions")}))
            else:
                await ws.send(msg)
    except ConnectionClosed:
        pass
    log("close", ws.close_code, ws.close_reason)


async def run_server(args):
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def watch_stdin():  # a daemon thread: EOF on stdin (the test died or finished) ends the server
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    tls = None
    if args.tls_cert:  # wss://
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    async with serve(handler, "127.0.0.1", 0, ssl=tls,
                     compression="deflate" if args.deflate else None,
                     select_subprotocol=lambda conn, offered: args.protocol if args.protocol in offered else None,
                     max_size=args.max_payload, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        try:
            await asyncio.wait_for(done.wait(), args.max_seconds)
        except asyncio.TimeoutError:
            log("max-seconds reached")
    return 0


# ------------------------------------------------------------------ client

def pattern(n):
    return bytes((i * 31 + 7) & 0xFF for i in range(n))


async def client_script(args, result):
    async def expect_text(want, what):
        got = await ws.recv()
        if not isinstance(got, str):
            raise AssertionError(f"{what}: expected text, got binary")
        if want is not None and got != want:
            raise AssertionError(f"{what}: expected {want!r}, got {got[:200]!r}")
        result["steps"] += 1
        return got

    tls = None
    if args.ca:  # wss:// against a private CA
        tls = ssl.create_default_context(cafile=args.ca)
    async with connect(args.url, ssl=tls,
                       compression="deflate" if args.deflate else None,
                       subprotocols=[args.protocol] if args.protocol else None,
                       max_size=None, ping_interval=None, open_timeout=10) as ws:
        result["protocol"] = ws.subprotocol
        result["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")

        await ws.send("hello")
        await expect_text("hello", "hello")

        big = pattern(1024 * 1024)
        await ws.send(big)
        got = await ws.recv()
        if got != big:
            raise AssertionError("1 MiB binary echo mismatch")
        result["steps"] += 1

        for s in UNICODE:
            await ws.send(s)
        for i, s in enumerate(UNICODE):
            await expect_text(s, f"unicode #{i}")

        # websockets resolves the waiter only on a pong carrying the same payload.
        await asyncio.wait_for(await ws.ping("probe-42"), 10)
        result["steps"] += 1

        if args.check_commands:
            await ws.send("info")
            info = json.loads(await expect_text(None, "info"))
            if info != {"protocol": result["protocol"], "extensions": result["extensions"]}:
                raise AssertionError(f"info mismatch: {info}")
            await ws.send("headers")
            headers = json.loads(await expect_text(None, "headers"))
            if "sec-websocket-key" not in headers or "host" not in headers:
                raise AssertionError("headers: missing sec-websocket-key/host")
            fragmented = "fragmented κόσμε 😀 text"
            await ws.send(f"fragments:4:{fragmented}")
            await expect_text(fragmented, "fragments")
            await ws.send("ping:abc")
            await expect_text("pong:abc", "ping command")
            await ws.send("unknown:command")
            await expect_text("unknown:command", "unknown command echo")
            await ws.send("close:4001:bye")
            try:
                extra = await ws.recv()
                raise AssertionError(f"close command: expected close, got message {extra!r:.80}")
            except ConnectionClosed:
                pass
            want = (4001, "bye")
        else:
            await ws.close(1000, "done")
            want = (1000, None)
        result["closeCode"], result["closeReason"] = ws.close_code, ws.close_reason
        if ws.close_code != want[0] or (want[1] is not None and ws.close_reason != want[1]):
            raise AssertionError(f"close: expected {want}, got {(ws.close_code, ws.close_reason)}")
        result["steps"] += 1


async def run_client(args):
    result = {"ok": False, "peer": "python-websockets", "url": args.url, "steps": 0,
              "protocol": None, "extensions": None}
    try:
        if not args.url:
            raise ValueError("--url is required")
        await asyncio.wait_for(client_script(args, result), args.max_seconds)
        result["ok"] = True
    except asyncio.TimeoutError:
        result["error"] = f"timeout after {args.max_seconds}s"
    except Exception as e:  # noqa: BLE001 -- every failure becomes a RESULT line
        result["error"] = f"{type(e).__name__}: {e}"
    print("RESULT " + json.dumps(result, ensure_ascii=False, separators=(",", ":")), flush=True)
    return 0 if result["ok"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--url")
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--protocol")
    p.add_argument("--max-payload", type=int, default=64 * 1024 * 1024)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--check-commands", action="store_true")
    p.add_argument("--ca", help="client: trust this CA file for wss://")
    p.add_argument("--tls-cert", help="server: serve wss:// with this certificate (PEM)")
    p.add_argument("--tls-key", help="server: the key of --tls-cert (PEM)")
    args = p.parse_args()
    if args.max_seconds is None:
        args.max_seconds = 120 if args.mode == "server" else 30
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(asyncio.run(run_server(args) if args.mode == "server" else run_client(args)))


if __name__ == "__main__":
    main()
