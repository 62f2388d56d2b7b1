#!/usr/bin/env python3
"""Soak: churn against a release `switchboard serve` with a replay log, for Benchmarks/soak.sh.

    soak.py SWITCHBOARD_BINARY

Loopback only. Starts `switchboard serve` (127.0.0.1, a fresh database, retaining
`soak.r.>` with no count or age limit, every other setting at its default), creates
tokens with `switchboard token create`, and runs, all at once:

- CHURN subscribers, each connecting, subscribing (one topic, a `*` group, `soak.r.>` or
  `soak.>`; a third of the retained ones resuming with `since` or `since_time`), switching
  to another pattern every few seconds (unsub, then sub), and leaving after 2-40 s, cleanly
  or by dropping TCP, then coming back with another token;
- PUBLISHERS publishing to 20 retained and 50 live topics with ids (RETAINED_RATE and
  LIVE_RATE messages per second in all) and reconnecting every 30-120 s; one more
  publishing 8 KB messages to `big.t` (BIG_RATE a second);
- STALLED subscribers of `big.t` that stop reading for 60-120 s (the broker's slow-consumer
  policy closes them), then read what is left;
- garbage, one new every GARBAGE_EVERY seconds: random bytes instead of HTTP, random bytes
  after the upgrade, 20 frames of bad JSON, half a frame and silence (frame timeout),
  a handshake trickled a byte a second and a silent connection (handshake timeout);
- every REVOKE_EVERY seconds a token revoked with `switchboard token revoke` (after a new
  one is created for the clients that come next): its connections must close with 4001.

First WARMUP seconds of that churn, then everything stops and the broker settles: its RSS
and open descriptors then are the baseline. Then DURATION seconds of churn, stop, settle,
and the checks:

- the broker is alive: it still runs and a new client publishes and receives;
- RSS at the end within RSS_MARGIN (percent, 25) of the baseline, descriptors within
  FD_MARGIN (4);
- every acked message of a retained topic replayable: a `since: 0` replay of each retained
  topic delivers seq 1, 2, ... without a gap up to its last acked seq, each acked one with
  the data it was acked for;
- every subscriber's stream contiguous per topic or with explicit `gap` notices, starting at
  `since + 1` when resumed with `since`; nothing after `unsubscribed`;
- revocations closed their connections with 4001: none is left 10 s after the command, or,
  if the driver has not seen it yet, 60 s after; garbage got its answer (400, a close
  frame, 408, 1008) and the timeouts were kept (10 s and 30 s, not earlier, at most 30 s
  late).

The driver is one Python process: on a busy machine its event loop lags (reported as `lag`),
and every time it measures includes that lag; the rates it reaches may fall short of those
asked for (the status lines show what it did).

Environment (all optional): DURATION (900), WARMUP (60), CHURN (1000), PUBLISHERS (8),
RETAINED_RATE (40), LIVE_RATE (100), BIG_RATE (20), STALLED (4), GARBAGE_EVERY (0.5),
REVOKE_EVERY (60), TOKENS (16), SEED (1), OUT (a directory for the database and the broker's
log; default a temporary one, removed when every check passed), RSS_MARGIN, FD_MARGIN.
Prints a status line every 10 s and a summary; exits 0 when every check passed, 1 if one
failed, 2 on a setup error. Every wait is bounded. Needs Python `websockets` (scripts/setup.sh).
"""

import asyncio
import itertools
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus


def env_number(name, default, kind=int):
    try:
        return kind(os.environ.get(name, default))
    except ValueError:
        print(f"soak: {name} must be a number, not {os.environ[name]!r}", file=sys.stderr)
        sys.exit(64)


DURATION = env_number("DURATION", 900, float)
WARMUP = env_number("WARMUP", 60, float)
CHURN = env_number("CHURN", 1000)
PUBLISHERS = env_number("PUBLISHERS", 8)
RETAINED_RATE = env_number("RETAINED_RATE", 40, float)
LIVE_RATE = env_number("LIVE_RATE", 100, float)
BIG_RATE = env_number("BIG_RATE", 20, float)
STALLED = env_number("STALLED", 4)
GARBAGE_EVERY = env_number("GARBAGE_EVERY", 0.5, float)
REVOKE_EVERY = env_number("REVOKE_EVERY", 60, float)
TOKENS = env_number("TOKENS", 16)
SEED = env_number("SEED", 1)
RSS_MARGIN = env_number("RSS_MARGIN", 25, float)
FD_MARGIN = env_number("FD_MARGIN", 4)

RETAINED = [f"soak.r.{g}.{k}" for g in range(4) for k in range(5)]
LIVE = [f"soak.l.{g}.{k}" for g in range(10) for k in range(5)]
BIG = "big.t"
STEP = 60  # seconds: the bound on any one step (a connect, a reply, a replay page)
REVOCATION_BOUND = 10  # seconds from `token revoke` returning to the last of its connections closing
HANDSHAKE_TIMEOUT = 10  # the broker's (the library default)
FRAME_TIMEOUT = 30  # the broker's frame_timeout_seconds default


class SetupError(Exception):
    pass


def matches(pattern, topic):
    """NATS-style match: `*` one segment, `>` one or more trailing segments."""
    p, t = pattern.split("."), topic.split(".")
    for i, part in enumerate(p):
        if part == ">":
            return len(t) > i
        if i >= len(t) or (part != "*" and part != t[i]):
            return False
    return len(p) == len(t)


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Token:
    def __init__(self, secret, ident):
        self.secret = secret
        self.id = ident
        self.revoked_at = None  # monotonic time `token revoke` returned


class Stream:
    """One subscriber connection's view: what it subscribed to and the last seq per topic.
    Reports a violation for a hole without a gap notice, a duplicate, a wrong first seq after
    `since`, and a message no subscription covers."""

    def __init__(self, soak, label):
        self.soak = soak
        self.label = label
        self.patterns = {}  # pattern -> "pending" | "active" | "leaving"
        self.last = {}  # topic -> last seq (or end of the last gap)
        self.first = {}  # topic -> the seq `since` says comes first

    def subscribe(self, pattern, since=None):
        self.patterns[pattern] = "pending"
        self.first.pop(pattern, None)
        if since is not None and "*" not in pattern and ">" not in pattern:
            self.first[pattern] = since + 1

    def handle(self, message):
        op = message.get("op")
        if op == "msg":
            self.soak.stats["received"] += 1
            self.advance(message["topic"], message["seq"], message["seq"], "msg")
        elif op == "gap":
            self.soak.stats["gap notices"] += 1
            self.advance(message["topic"], message["from"], message["to"], "gap")
        elif op == "subscribed":
            self.patterns[message["topic"]] = "active"
        elif op == "unsubscribed":
            self.patterns.pop(message["topic"], None)
            for seen in (self.last, self.first):
                for topic in [t for t in seen if not self.covered(t)]:
                    del seen[topic]
        elif op == "error":
            self.soak.stats[f"subscriber error {message.get('code')}"] += 1
        return op

    def covered(self, topic):
        return any(matches(p, topic) for p in self.patterns)

    def advance(self, topic, start, end, kind):
        if not self.covered(topic):
            self.soak.violation(f"{self.label}: {kind} {topic} {start} with no subscription covering it")
            return
        previous = self.last.get(topic)
        if previous is None:
            expected = self.first.pop(topic, None)
            if expected is not None and start != expected:
                self.soak.violation(f"{self.label}: first {kind} of {topic} after since is {start}, not {expected}")
        elif start != previous + 1:
            self.soak.violation(f"{self.label}: {kind} {topic} {start} after {previous}")
        self.last[topic] = end


class Soak:
    def __init__(self, binary, directory):
        self.binary = os.path.abspath(binary)
        self.directory = directory
        self.database = os.path.join(directory, "soak.db")
        self.stats = Counter()
        self.violations = []
        self.tokens = []  # active
        self.all_tokens = []
        self.acked = {topic: {} for topic in RETAINED}  # seq -> (publisher, n)
        self.open = {}  # connection number -> Token, for the revocation check
        self.numbers = itertools.count()
        self.revocation_latencies = []  # from starting `token revoke` to each 4001
        self.timeouts = {"frame": [], "handshake": []}
        self.stopping = asyncio.Event()
        self.lag = 0.0  # the driver's largest event-loop lag, in seconds
        self.rng = random.Random(SEED)
        self.loop = asyncio.get_running_loop()

    def violation(self, text):
        self.stats["violations"] += 1
        if len(self.violations) < 40:
            self.violations.append(text)

    # MARK: the broker

    async def start_broker(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env["SWITCHBOARD_REPLAY_RETAIN"] = "soak.r.>"
        self.log = open(os.path.join(self.directory, "serve.log"), "ab")
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "serve", "--host", "127.0.0.1", "--port", "0", "--database", self.database,
            cwd=self.directory, env=env, stdout=asyncio.subprocess.PIPE, stderr=self.log)

        async def listening_port():
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise SetupError(f"serve exited before listening (see {self.directory}/serve.log)")
                if line.startswith(b"switchboard listening on "):
                    return int(line.rsplit(b":", 1)[1])

        self.port = await asyncio.wait_for(listening_port(), STEP)
        self.drain = asyncio.create_task(self.process.stdout.read())
        self.url = f"ws://127.0.0.1:{self.port}/"

    def alive(self):
        return self.process.returncode is None

    def sample(self):
        return proc_rss_kib(self.process.pid), proc_fds(self.process.pid)

    async def cli(self, *arguments):
        process = await asyncio.create_subprocess_exec(
            self.binary, "token", *arguments, "--database", self.database,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), STEP)
        if process.returncode != 0:
            raise SetupError(f"switchboard token {' '.join(arguments)}: {err.decode().strip()}")
        return out.decode(), err.decode()

    async def create_token(self):
        name = f"soak-{len(self.all_tokens)}"
        out, err = await self.cli("create", "--name", name, "--subscribe", "soak.>,big.>", "--publish", "soak.>,big.>")
        ident = re.search(r"created token (\S+)", err)
        if not ident:
            raise SetupError(f"token create printed no id: {err.strip()}")
        token = Token(out.strip(), ident.group(1))
        self.tokens.append(token)
        self.all_tokens.append(token)
        return token

    # MARK: clients

    def connect(self, token, **options):
        options.setdefault("max_size", 1 << 22)
        return websockets.connect(
            self.url, subprotocols=["switchboard.v1"], additional_headers={"Authorization": f"Bearer {token.secret}"},
            compression=None, open_timeout=STEP, close_timeout=5, ping_interval=None, **options)

    def closed(self, error, token, what):
        """Accounts for a connection the broker closed (or refused) while it was in use."""
        if isinstance(error, InvalidStatus):
            status = error.response.status_code
            if status == 401 and token.revoked_at is not None:
                self.stats["refused: token revoked (expected)"] += 1
            else:
                self.stats[f"{what} refused with {status}"] += 1
                self.violation(f"{what} refused with HTTP {status}")
            return
        if not isinstance(error, ConnectionClosed):
            self.stats[f"{what} failed: {type(error).__name__}"] += 1
            self.violation(f"{what} failed: {type(error).__name__}: {error}")
            return
        code = error.rcvd.code if error.rcvd else 1006
        if code == 4001:
            if token.revoked_at is None:
                self.violation(f"{what} closed with 4001 but its token was not revoked")
            else:
                self.revocation_latencies.append(max(0.0, time.monotonic() - token.revoked_at))
            self.stats["closed 4001 (revoked)"] += 1
        elif code == 1013:
            self.stats[f"{what} closed 1013 (slow consumer)"] += 1
        else:
            self.stats[f"{what} closed {code}"] += 1
            if code != 1000:
                self.violation(f"{what} closed by the broker with {code} {error.rcvd.reason if error.rcvd else ''}")

    async def churner(self, index):
        rng = random.Random(SEED * 1_000_003 + index)
        await asyncio.sleep(rng.uniform(0, 5))
        while not self.stopping.is_set():
            token = rng.choice(self.tokens)
            try:
                await self.subscriber_session(rng, token, rng.uniform(2, 40))
            except (ConnectionClosed, InvalidStatus, OSError, asyncio.TimeoutError) as error:
                self.closed(error, token, "subscriber")
            await asyncio.sleep(rng.uniform(0, 2))

    def choose_subscription(self, rng):
        """A pattern and the sub request for it."""
        roll = rng.random()
        if roll < 0.35:
            pattern = rng.choice(LIVE)
        elif roll < 0.55:
            pattern = f"soak.l.{rng.randrange(10)}.*"
        elif roll < 0.75:
            pattern = rng.choice(RETAINED)
        elif roll < 0.9:
            pattern = f"soak.r.{rng.randrange(4)}.*"
        elif roll < 0.98:
            pattern = "soak.r.>"
        else:
            pattern = "soak.>"
        request = {"op": "sub", "topic": pattern, "id": str(rng.randrange(1 << 30))}
        since = None
        if pattern.startswith("soak.r.") and rng.random() < 0.35:
            if "*" in pattern or ">" in pattern:
                request["since_time"] = int(time.time() * 1000) - rng.randrange(60_000)
            else:
                last = max(self.acked[pattern], default=0)
                since = max(0, last - rng.randrange(300))
                request["since"] = since
        return pattern, since, request

    async def subscriber_session(self, rng, token, lifetime):
        async with self.connect(token) as ws:
            number = next(self.numbers)
            self.open[number] = token
            self.stats["subscriber connections"] += 1
            try:
                stream = Stream(self, f"subscriber {number}")
                pattern, since, request = self.choose_subscription(rng)
                stream.subscribe(pattern, since)
                await ws.send(json.dumps(request))
                end = self.loop.time() + lifetime
                switch_at = self.loop.time() + rng.uniform(3, 10)
                switching = None  # the next subscription, once the unsub is sent
                while not self.stopping.is_set():
                    now = self.loop.time()
                    if now >= end:
                        break
                    if switching is None and now >= switch_at:
                        switching = self.choose_subscription(rng)
                        await ws.send(json.dumps({"op": "unsub", "topic": pattern, "id": "u"}))
                        stream.patterns[pattern] = "leaving"
                    try:
                        # At most a second, so that the session sees `stopping` soon.
                        raw = await asyncio.wait_for(
                            ws.recv(), min(end, switch_at if switching is None else end, now + 1) - now)
                    except asyncio.TimeoutError:
                        continue
                    if stream.handle(json.loads(raw)) == "unsubscribed" and switching is not None:
                        pattern, since, request = switching
                        switching = None
                        stream.subscribe(pattern, since)
                        await ws.send(json.dumps(request))
                        self.stats["pattern switches"] += 1
                        switch_at = self.loop.time() + rng.uniform(3, 10)
                if rng.random() < 0.2:
                    ws.transport.abort()  # drop TCP without a close handshake
                    self.stats["subscriber TCP drops"] += 1
            finally:
                del self.open[number]

    async def publisher(self, index):
        rng = random.Random(SEED * 2_000_003 + index)
        rate = (RETAINED_RATE + LIVE_RATE) / max(PUBLISHERS, 1)
        retained_share = RETAINED_RATE / max(RETAINED_RATE + LIVE_RATE, 1e-9)
        n = 0
        while not self.stopping.is_set():
            token = rng.choice(self.tokens)
            pending = {}  # id -> (topic, n)
            try:
                async with self.connect(token) as ws:
                    self.stats["publisher connections"] += 1
                    reader = asyncio.create_task(self.read_acks(ws, pending, index))
                    try:
                        end = self.loop.time() + rng.uniform(30, 120)
                        while not self.stopping.is_set() and self.loop.time() < end and not reader.done():
                            topic = rng.choice(RETAINED) if rng.random() < retained_share else rng.choice(LIVE)
                            n += 1
                            ident = f"{index}-{n}"
                            pending[ident] = (topic, n)
                            data = {"p": index, "n": n, "pad": "x" * rng.randrange(20, 200)}
                            await ws.send(json.dumps({"op": "pub", "topic": topic, "data": data, "id": ident}))
                            self.stats["published"] += 1
                            await asyncio.sleep(rng.expovariate(rate))
                        # Let the last acks come before leaving.
                        for _ in range(50):
                            if not pending or reader.done():
                                break
                            await asyncio.sleep(0.1)
                    finally:
                        reader.cancel()
                        try:
                            await reader
                        except (asyncio.CancelledError, ConnectionClosed):
                            pass
            except (ConnectionClosed, InvalidStatus, OSError, asyncio.TimeoutError) as error:
                self.closed(error, token, "publisher")
            self.stats["publishes left unacked"] += len(pending)
            await asyncio.sleep(rng.uniform(0, 1))

    async def read_acks(self, ws, pending, index):
        async for raw in ws:
            message = json.loads(raw)
            if message.get("op") == "ack":
                if message.get("id") not in pending:
                    self.violation(f"ack for an id never sent or acked before: {message}")
                    continue
                topic, n = pending.pop(message["id"])
                self.stats["acked"] += 1
                if topic in self.acked:
                    seq = message["seq"]
                    if seq in self.acked[topic]:
                        self.violation(f"{topic} seq {seq} acked twice")
                    self.acked[topic][seq] = (index, n)
            elif message.get("op") == "error":
                pending.pop(message.get("id"), None)
                self.stats[f"publish error {message.get('code')}"] += 1
                self.violation(f"publish answered {message}")

    async def big_publisher(self):
        rng = random.Random(SEED * 3_000_017)
        data = "b" * 8000
        while not self.stopping.is_set():
            token = rng.choice(self.tokens)
            try:
                async with self.connect(token) as ws:
                    reader = asyncio.create_task(ws.wait_closed())
                    while not self.stopping.is_set() and not reader.done():
                        await ws.send(json.dumps({"op": "pub", "topic": BIG, "data": data}))
                        self.stats["published big"] += 1
                        await asyncio.sleep(1 / BIG_RATE)
                    reader.cancel()
            except (ConnectionClosed, InvalidStatus, OSError, asyncio.TimeoutError) as error:
                self.closed(error, token, "big publisher")
            await asyncio.sleep(0.5)

    async def stalled(self, index):
        """Subscribes to `big.t` with a 4 KiB receive buffer and reads nothing for 60-120 s."""
        rng = random.Random(SEED * 4_000_037 + index)
        while not self.stopping.is_set():
            token = rng.choice(self.tokens)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(self.loop.sock_connect(sock, ("127.0.0.1", self.port)), STEP)
                async with self.connect(token, sock=sock, max_queue=1) as ws:
                    self.stats["stalled connections"] += 1
                    await ws.send(json.dumps({"op": "sub", "topic": BIG}))
                    try:
                        await asyncio.wait_for(self.stopping.wait(), rng.uniform(60, 120))
                        break
                    except asyncio.TimeoutError:
                        pass
                    # Read what is left: the broker has closed it if it gave up on us.
                    try:
                        async with asyncio.timeout(STEP):
                            async for _ in ws:
                                pass
                        self.stats["stalled: closed by the broker"] += 1
                    except TimeoutError:
                        self.stats["stalled: still open when it read again"] += 1
            except ConnectionClosed as error:
                code = error.rcvd.code if error.rcvd else 1006
                self.stats[f"stalled: closed by the broker ({code})"] += 1
            except (InvalidStatus, OSError, asyncio.TimeoutError) as error:
                self.closed(error, token, "stalled subscriber")
            finally:
                sock.close()

    # MARK: garbage

    async def raw_connection(self):
        return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), STEP)

    def upgrade_request(self, token):
        return (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token.secret}\r\n\r\n").encode()

    async def read_all(self, reader, limit):
        """Everything until EOF (or `limit` seconds)."""
        data = b""
        try:
            async with asyncio.timeout(limit):
                while chunk := await reader.read(65536):
                    data += chunk
        except (TimeoutError, ConnectionError):
            pass
        return data

    async def upgraded_raw(self, token):
        reader, writer = await self.raw_connection()
        writer.write(self.upgrade_request(token))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise InvalidStatusLine(head)
        return reader, writer

    @staticmethod
    def close_code(data):
        """The code of the first close frame in server bytes, if any."""
        offset = 0
        while offset + 2 <= len(data):
            opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
            header = 2
            if length == 126:
                length, header = int.from_bytes(data[offset + 2:offset + 4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(data[offset + 2:offset + 10], "big"), 10
            if opcode == 0x8:
                payload = data[offset + header:offset + header + length]
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            offset += header + length
        return None

    @staticmethod
    def masked_frame(opcode, payload, fin=True):
        mask = os.urandom(4)
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def garbage(self, kind, rng):
        token = rng.choice(self.tokens)
        self.stats[f"garbage {kind}"] += 1
        try:
            if kind == "not http":
                reader, writer = await self.raw_connection()
                writer.write(bytes(rng.randrange(256) for _ in range(rng.randrange(64, 1024))) + b"\r\n\r\n")
                answer = await self.read_all(reader, STEP)
                writer.close()
                status = answer[:12]
                if not status.startswith(b"HTTP/1.1 4"):
                    self.violation(f"garbage instead of HTTP got {answer[:40]!r}")
            elif kind == "bad frames":
                reader, writer = await self.upgraded_raw(token)
                writer.write(os.urandom(rng.randrange(16, 512)))
                answer = await self.read_all(reader, STEP)
                writer.close()
                code = self.close_code(answer)
                self.stats[f"garbage bad frames: close {code}"] += 1
            elif kind == "bad json":
                async with self.connect(token) as ws:
                    for _ in range(20):
                        await ws.send("{oops")
                    try:
                        async with asyncio.timeout(STEP):
                            async for _ in ws:
                                pass
                    except ConnectionClosed:
                        pass
                    code = ws.close_code
                    if code != 1008 and not (code == 4001 and token.revoked_at is not None):
                        self.violation(f"20 frames of bad JSON ended with {code}, not 1008")
            elif kind == "half frame":
                reader, writer = await self.upgraded_raw(token)
                frame = self.masked_frame(0x1, json.dumps({"op": "pub", "topic": "soak.l.0.0", "data": "x" * 900}).encode())
                start = time.monotonic()
                writer.write(frame[:rng.randrange(1, len(frame) // 2)])
                answer = await self.read_all(reader, FRAME_TIMEOUT + STEP)
                elapsed = time.monotonic() - start
                writer.close()
                code = self.close_code(answer)
                if code == 4001 and token.revoked_at is not None:
                    self.stats["garbage half frame: token revoked first"] += 1
                elif code != 1008 or not FRAME_TIMEOUT - 1 <= elapsed <= FRAME_TIMEOUT + 30:
                    self.violation(f"half a frame: close {code} after {elapsed:.1f} s (expected 1008 after {FRAME_TIMEOUT} s)")
                else:
                    self.timeouts["frame"].append(elapsed)
            elif kind in ("trickled handshake", "silent"):
                # Before connecting: the broker's clock starts when it accepts, which a busy
                # driver may notice later.
                start = time.monotonic()
                reader, writer = await self.raw_connection()
                request = self.upgrade_request(token)
                answer = b""
                if kind == "trickled handshake":
                    for byte in request:
                        writer.write(bytes([byte]))
                        try:
                            answer = await asyncio.wait_for(reader.read(4096), 1)
                            break
                        except asyncio.TimeoutError:
                            continue
                        except ConnectionError:
                            break
                answer += await self.read_all(reader, HANDSHAKE_TIMEOUT + STEP)
                elapsed = time.monotonic() - start
                writer.close()
                self.timeouts["handshake"].append(elapsed)
                if not answer.startswith(b"HTTP/1.1 408") or not HANDSHAKE_TIMEOUT - 1 <= elapsed <= HANDSHAKE_TIMEOUT + 30:
                    self.violation(f"{kind}: {answer[:20]!r} after {elapsed:.1f} s (expected 408 after {HANDSHAKE_TIMEOUT} s)")
        except (ConnectionClosed, InvalidStatus, OSError, asyncio.TimeoutError, InvalidStatusLine) as error:
            if isinstance(error, (InvalidStatus, InvalidStatusLine)) and token.revoked_at is not None:
                self.stats["refused: token revoked (expected)"] += 1
            elif isinstance(error, ConnectionError) and kind == "bad frames":
                self.stats["garbage bad frames: reset"] += 1
            else:
                self.violation(f"garbage {kind}: {type(error).__name__}: {error}")

    async def garbage_spawner(self):
        rng = random.Random(SEED * 5_000_011)
        kinds = ["not http", "bad frames", "bad json", "half frame", "trickled handshake", "silent"]
        weights = [3, 3, 2, 1, 1, 1]
        tasks = set()
        while not self.stopping.is_set():
            task = asyncio.create_task(self.garbage(rng.choices(kinds, weights)[0], rng))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            try:
                await asyncio.wait_for(self.stopping.wait(), GARBAGE_EVERY)
            except asyncio.TimeoutError:
                pass
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # MARK: revocation

    async def revoker(self):
        checks = set()
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), REVOKE_EVERY)
                break
            except asyncio.TimeoutError:
                pass
            await self.create_token()
            victim = self.rng.choice(self.tokens[:-1])
            self.tokens.remove(victim)
            # Its connections may close before the command has exited.
            victim.revoked_at = time.monotonic()
            await self.cli("revoke", victim.id)
            self.stats["tokens revoked"] += 1
            check = asyncio.create_task(self.check_revoked(victim))
            checks.add(check)
            check.add_done_callback(checks.discard)
        await asyncio.gather(*checks, return_exceptions=True)

    async def check_revoked(self, token):
        """The token's connections must be gone REVOCATION_BOUND s after `token revoke`. One the
        driver still holds then may have been closed in time and not yet seen (a busy driver's
        loop lags; see `lag`): it gets STEP more seconds, after which it is a violation."""
        await asyncio.sleep(REVOCATION_BOUND)
        late = {n for n, t in self.open.items() if t is token}
        self.stats["revoked connections seen after the bound"] += len(late)
        deadline = self.loop.time() + STEP
        while late and self.loop.time() < deadline:
            await asyncio.sleep(0.5)
            late &= self.open.keys()
        if late:
            self.violation(f"{len(late)} connections of revoked {token.id} still open {REVOCATION_BOUND + STEP} s after")

    async def measure_lag(self):
        """How late the driver's own event loop runs a 100 ms sleep: what its timings include."""
        while not self.stopping.is_set():
            before = self.loop.time()
            await asyncio.sleep(0.1)
            self.lag = max(self.lag, self.loop.time() - before - 0.1)

    # MARK: phases

    async def monitor(self, label, start):
        last = Counter()
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), 10)
            except asyncio.TimeoutError:
                pass
            if not self.alive():
                self.violation(f"the broker exited with status {self.process.returncode}")
                self.stopping.set()
                return
            rss, fds = self.sample()
            now = Counter(self.stats)
            delta = {k: now[k] - last[k] for k in ("received", "published", "subscriber connections")}
            last = now
            print(f"[{label} {self.loop.time() - start:6.0f} s] rss {rss / 1024:7.1f} MiB  fds {fds:5d}  "
                  f"open {len(self.open):5d}  conns +{delta['subscriber connections']:5d}  "
                  f"pub +{delta['published']:6d}  recv +{delta['received']:8d}  "
                  f"lag {self.lag:4.1f} s  violations {self.stats['violations']}", flush=True)

    async def churn(self, label, seconds):
        self.stopping = asyncio.Event()
        start = self.loop.time()
        tasks = [asyncio.create_task(self.churner(i)) for i in range(CHURN)]
        tasks += [asyncio.create_task(self.publisher(i)) for i in range(PUBLISHERS)]
        tasks += [asyncio.create_task(self.big_publisher())] if BIG_RATE > 0 else []
        tasks += [asyncio.create_task(self.stalled(i)) for i in range(STALLED)]
        tasks += [asyncio.create_task(self.garbage_spawner()), asyncio.create_task(self.revoker())]
        monitor = asyncio.create_task(self.monitor(label, start))
        tasks += [asyncio.create_task(self.measure_lag())]
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self.stopping.set()
        # Everyone leaves: sessions end at their next step, garbage is cancelled.
        done, pending = await asyncio.wait(tasks, timeout=STEP + FRAME_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.exception() and not isinstance(task.exception(), asyncio.CancelledError):
                self.violation(f"a client task failed: {task.exception()!r}")
        self.stats[f"{label}: tasks cancelled at the end"] += len(pending)
        await monitor

    async def settle(self):
        """Waits until the broker's descriptor count stays the same for 5 s (at most 2 min)."""
        samples = []
        for _ in range(120):
            samples.append(self.sample())
            if len(samples) >= 5 and len({fds for _, fds in samples[-5:]}) == 1:
                break
            await asyncio.sleep(1)
        return samples[-1]

    async def probe(self):
        """A new client publishes to a fresh topic and gets its message back."""
        token = self.tokens[-1]
        async with self.connect(token) as ws:
            await ws.send(json.dumps({"op": "sub", "topic": "soak.probe", "id": "s"}))
            await ws.send(json.dumps({"op": "pub", "topic": "soak.probe", "data": "alive", "id": "p"}))
            async with asyncio.timeout(STEP):
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("op") == "msg":
                        return message["data"] == "alive"
        return False

    async def check_replay(self):
        """`since: 0` on every retained topic: contiguous from 1, each acked seq with its data."""
        token = self.tokens[-1]
        replayed = 0
        for topic in RETAINED:
            acked = self.acked[topic]
            if not acked:
                continue
            try:
                replayed += await self.replay(token, topic, acked)
            except (TimeoutError, ConnectionClosed, InvalidStatus, OSError) as error:
                self.violation(f"replay of {topic}: {type(error).__name__}: {error}")
        self.stats["acked retained messages replayed"] = replayed
        return replayed

    async def replay(self, token, topic, acked):
        """Replays `topic` from its start up to its last acked seq; returns the acked ones seen."""
        last = max(acked)
        expected = 1
        replayed = 0
        async with self.connect(token, max_size=1 << 24) as ws:
            await ws.send(json.dumps({"op": "sub", "topic": topic, "id": "r", "since": 0}))
            async with asyncio.timeout(STEP * 5):
                async for raw in ws:
                    message = json.loads(raw)
                    op = message.get("op")
                    if op == "gap":
                        self.violation(f"replay of {topic}: gap {message['from']}-{message['to']}")
                        expected = message["to"] + 1
                    elif op == "msg":
                        seq = message["seq"]
                        if seq != expected:
                            self.violation(f"replay of {topic}: seq {seq}, expected {expected}")
                        expected = seq + 1
                        if seq in acked:
                            data = message["data"]
                            if (data.get("p"), data.get("n")) != acked[seq]:
                                self.violation(f"replay of {topic}: seq {seq} is {data}, acked as {acked[seq]}")
                            replayed += 1
                        if seq >= last:
                            break
        return replayed


class InvalidStatusLine(Exception):
    pass


async def run(binary):
    keep = "OUT" in os.environ
    directory = os.environ.get("OUT") or tempfile.mkdtemp(prefix="switchboard-soak-")
    os.makedirs(directory, exist_ok=True)
    soak = Soak(binary, directory)
    await soak.start_broker()
    try:
        for _ in range(TOKENS):
            await soak.create_token()
        fresh = soak.sample()
        print(f"soak: broker pid {soak.process.pid} on port {soak.port}, data in {directory}; "
              f"fresh: rss {fresh[0] / 1024:.1f} MiB, fds {fresh[1]}", flush=True)
        print(f"soak: warm-up {WARMUP:.0f} s, then {DURATION:.0f} s; {CHURN} subscribers, {PUBLISHERS} publishers, "
              f"{STALLED} stalled, garbage every {GARBAGE_EVERY} s, a revocation every {REVOKE_EVERY:.0f} s", flush=True)
        await soak.churn("warm-up", WARMUP)
        baseline = await soak.settle()
        warm_stats = Counter(soak.stats)
        print(f"soak: baseline after warm-up: rss {baseline[0] / 1024:.1f} MiB, fds {baseline[1]}", flush=True)
        started = time.monotonic()
        await soak.churn("soak", DURATION)
        ran = time.monotonic() - started
        end = await soak.settle()
        alive = soak.alive() and await soak.probe()
        replayed = await soak.check_replay() if soak.alive() else 0
    finally:
        if soak.alive():
            soak.process.terminate()
        status = await asyncio.wait_for(soak.process.wait(), STEP)
        soak.log.close()

    stats = soak.stats
    soak_only = {k: stats[k] - warm_stats[k] for k in stats}
    rss_ok = end[0] <= baseline[0] * (1 + RSS_MARGIN / 100)
    fds_ok = abs(end[1] - baseline[1]) <= FD_MARGIN
    checks = {
        "broker alive (a new client publishes and receives)": alive,
        f"RSS back to baseline (+{RSS_MARGIN:.0f} %)": rss_ok,
        f"descriptors back to baseline (±{FD_MARGIN})": fds_ok,
        "acked retained messages replayable": replayed == sum(len(a) for a in soak.acked.values()),
        "streams contiguous or with explicit gaps, no other violation": stats["violations"] == 0,
        "clean exit on SIGTERM": status == 0,
    }
    print()
    print(f"== soak summary ({ran:.0f} s of churn after a {WARMUP:.0f} s warm-up; figures for the whole run "
          f"unless marked)")
    print(f"broker RSS: fresh {fresh[0] / 1024:.1f} MiB, baseline {baseline[0] / 1024:.1f} MiB, "
          f"end {end[0] / 1024:.1f} MiB ({(end[0] - baseline[0]) / 1024:+.1f} MiB)")
    print(f"broker descriptors: fresh {fresh[1]}, baseline {baseline[1]}, end {end[1]} ({end[1] - baseline[1]:+d})")
    print(f"driver event-loop lag: up to {soak.lag:.1f} s (its timings, not the broker's, include it)")
    print(f"soak phase: {soak_only.get('subscriber connections', 0)} subscriber connections, "
          f"{soak_only.get('published', 0)} published, {soak_only.get('acked', 0)} acked, "
          f"{soak_only.get('received', 0)} received")
    if soak.revocation_latencies:
        latencies = sorted(soak.revocation_latencies)
        print(f"revocations: {len(latencies)} connections closed with 4001, seen by the driver "
              f"{latencies[len(latencies) // 2]:.2f} s (median), {latencies[-1]:.2f} s (max) after `token revoke` started")
    for kind, values in soak.timeouts.items():
        if values:
            print(f"{kind} timeouts: {len(values)}, {min(values):.1f}-{max(values):.1f} s")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")
    for text in soak.violations:
        print(f"  violation: {text}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    passed = all(checks.values())
    if passed and not keep:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"soak: data and serve.log kept in {directory}")
    return 0 if passed else 1


def main():
    if len(sys.argv) != 2:
        print("usage: soak.py SWITCHBOARD_BINARY", file=sys.stderr)
        sys.exit(64)
    budget = WARMUP + DURATION + 20 * 60
    try:
        sys.exit(asyncio.run(asyncio.wait_for(run(sys.argv[1]), budget)))
    except SetupError as error:
        print(f"soak: {error}", file=sys.stderr)
        sys.exit(2)
    except asyncio.TimeoutError:
        print(f"soak: gave up after {budget:.0f} s", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
