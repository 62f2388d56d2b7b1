#!/usr/bin/env python3
"""Background topics for Benchmarks/curves.sh: CONNS connections each subscribe to TOPICS
topics (bg.0 ... bg.TOPICS-1, so every topic has CONNS subscribers), then one more
connection publishes one message to each of them, so that the broker holds TOPICS live
topics, not only subscriptions. wsload can drive only one topic; this builds the rest of
the table around it. Prints "ready" once every subscriber has received everything, then
holds the connections (draining what arrives) until it is killed or HOLD seconds have
passed.

    subscribe-many.py PORT TOPICS [--conns 10] [--hold 600]

Speaks the broker protocol that both servers share ({"op":"sub"|"pub","topic":..}).
Frames are masked with a zero key (legal, and no per-byte work here). Loopback only.
"""
import argparse
import base64
import os
import re
import socket
import sys
import threading
import time

MARK = re.compile(rb"@@M(\d+)@@")
BATCH = 2000  # publishes to new topics in flight: the broker reads each new topic's seq from its store


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("subscribe-many.py: connection closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        sys.exit("subscribe-many.py: handshake refused: " + head.split(b"\r\n")[0].decode(errors="replace"))
    s.settimeout(None)
    return s, head.split(b"\r\n\r\n", 1)[1]


def frame(text):
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes([0x81, 0x80 | n])
    else:
        header = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload


class Drain(threading.Thread):
    """Reads and discards what a connection receives, noting the highest marker @@M<k>@@ seen."""

    def __init__(self, sock, rest):
        super().__init__(daemon=True)
        self.sock, self.tail, self.seen, self.closed = sock, rest, -1, False
        self.cond = threading.Condition()

    def run(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    return
                window = self.tail + chunk
                marks = [int(m) for m in MARK.findall(window)]
                self.tail = window[-24:]
                if marks and max(marks) > self.seen:
                    self.seen = max(marks)
                    self.cond.notify_all()

    def wait(self, mark, deadline):
        with self.cond:
            while self.seen < mark and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return self.seen >= mark


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("topics", type=int)
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--hold", type=float, default=600)
    args = parser.parse_args()
    deadline = time.monotonic() + 240

    subs = [connect(args.port) for _ in range(args.conns)]
    drains = [Drain(s, rest) for s, rest in subs]
    pub, rest = connect(args.port)
    drains.append(Drain(pub, rest))
    for d in drains:
        d.start()
    subs_drains = drains[:-1]
    batch = b"".join(frame('{"op":"sub","topic":"bg.%d"}' % i) for i in range(args.topics))
    batch += frame('{"op":"sub","topic":"bg.sync"}')
    for s, _ in subs:
        s.sendall(batch)
    # A subscriber that has marker k has had everything sent before it applied or delivered.
    def mark(k):
        return frame('{"op":"pub","topic":"bg.sync","data":"@@M%d@@"}' % k)

    while not all(d.wait(0, time.monotonic() + 0.5) for d in subs_drains):
        if time.monotonic() > deadline:
            sys.exit("subscribe-many.py: subscriptions not confirmed within 240 s")
        pub.sendall(mark(0))
    for k, start in enumerate(range(0, args.topics, BATCH), 1):
        stop = min(args.topics, start + BATCH)
        pub.sendall(b"".join(frame('{"op":"pub","topic":"bg.%d","data":"x"}' % i) for i in range(start, stop)) + mark(k))
        if not all(d.wait(k, deadline) for d in subs_drains):
            sys.exit("subscribe-many.py: the background publishes were not all delivered within 240 s")
    print("ready", flush=True)
    end = time.monotonic() + args.hold
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


if __name__ == "__main__":
    main()
