#!/usr/bin/env python3
"""kill -9 of the real `switchboard serve` in the middle of a publish burst, for
Benchmarks/replay-crash.sh serve.

    replay-crash-serve.py SWITCHBOARD_BINARY [ROUNDS]

Each round starts `switchboard serve` on the same database (retaining `crash.>`), checks what
the previous, killed, run left (below), then publishes to `crash.t` pipelined (up to WINDOW
publishes waiting for their ack, each with an id) and SIGKILLs the broker the moment a random
number of acks has arrived, with publishes still in flight. A last start checks the last kill.

The check after each restart: one more publish with an id learns the last stored seq (its
ack is last + 1); a `sub` with `since: 0` must then deliver every seq 1…last as a `msg`
(contiguous: no `gap`, nothing was pruned), every acked seq with the data it was acked
with, and of each burst exactly a prefix (batches commit in order and atomically).
Needs Python `websockets` (scripts/setup.sh installs it). Every wait is bounded.
"""

import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile

import websockets

TOPIC = "crash.t"
WINDOW = 4096
TIMEOUT = 60  # seconds, for any one step


class Failure(Exception):
    pass


class Serve:
    """One run of `switchboard serve` in `directory` (stderr kept in serve.log there)."""

    def __init__(self, binary, directory):
        self.binary = os.path.abspath(binary)  # serve runs in `directory`
        self.directory = directory

    async def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env["SWITCHBOARD_REPLAY_RETAIN"] = "crash.>"
        env["SWITCHBOARD_REQUEST_RATE"] = "0"  # the burst is as fast as the client can go
        self.log = open(os.path.join(self.directory, "serve.log"), "ab")
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "serve", "--port", "0", "--host", "127.0.0.1",
            "--anonymous-publish", "crash.>", "--anonymous-subscribe", "crash.>",
            cwd=self.directory, env=env, stdout=asyncio.subprocess.PIPE, stderr=self.log)

        async def listening_port():
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise Failure(f"serve exited before listening (see {self.directory}/serve.log)")
                if line.startswith(b"switchboard listening on "):
                    return int(line.rsplit(b":", 1)[1])

        self.port = await asyncio.wait_for(listening_port(), TIMEOUT)
        # Nothing more is expected on stdout; drain it anyway so the broker never blocks on it.
        self.drain = asyncio.create_task(self.process.stdout.read())
        return self.port

    def kill(self):
        os.kill(self.process.pid, signal.SIGKILL)

    async def wait(self):
        status = await asyncio.wait_for(self.process.wait(), TIMEOUT)
        self.log.close()
        return status


def connect(port):
    return websockets.connect(
        f"ws://127.0.0.1:{port}/", subprotocols=["switchboard.v1"], compression=None,
        max_queue=None, open_timeout=TIMEOUT, close_timeout=5)


async def burst_and_kill(serve, first, kill_after):
    """Publishes first, first+1, … (data and id) until `kill_after` acks are in, then kill -9.
    Returns (seq → data of every ack received, publishes in flight at the kill)."""
    acked = {}
    sent = 0
    in_flight = None
    credit = asyncio.Semaphore(WINDOW)
    killed = asyncio.Event()
    async with connect(serve.port) as ws:
        async def publish():
            nonlocal sent
            try:
                while not killed.is_set():
                    await credit.acquire()
                    if killed.is_set():
                        return
                    n = first + sent
                    await ws.send(json.dumps({"op": "pub", "topic": TOPIC, "data": n, "id": str(n)}))
                    sent += 1
            except websockets.ConnectionClosed:
                pass

        publisher = asyncio.create_task(publish())
        try:
            # Acks written before the broker died still arrive before the connection's end.
            async for text in ws:
                message = json.loads(text)
                if message.get("op") != "ack":
                    raise Failure(f"burst got {text}")
                acked[message["seq"]] = int(message["id"])
                credit.release()
                if len(acked) == kill_after and in_flight is None:
                    in_flight = sent - len(acked)
                    serve.kill()
                    killed.set()
        except websockets.ConnectionClosed:
            pass
        publisher.cancel()
    await serve.wait()
    return acked, in_flight


async def verify(port, known, bursts, probe):
    """The check described at the top; returns seq → data of everything stored."""
    async with connect(port) as ws:
        await ws.send(json.dumps({"op": "pub", "topic": TOPIC, "data": probe, "id": "probe"}))
        ack = json.loads(await ws.recv())
        if ack.get("op") != "ack":
            raise Failure(f"probe publish answered {ack}")
        last = ack["seq"]
        if known and last <= max(known):
            raise Failure(f"seq {last} after the restart does not continue past acked {max(known)}")
        await ws.send(json.dumps({"op": "sub", "topic": TOPIC, "since": 0, "id": "r"}))
        subscribed = json.loads(await ws.recv())
        if subscribed.get("op") != "subscribed":
            raise Failure(f"sub answered {subscribed}")
        stored = {}
        for seq in range(1, last + 1):
            message = json.loads(await ws.recv())
            if message.get("op") != "msg" or message.get("seq") != seq:
                raise Failure(f"expected stored seq {seq} of 1…{last}, got {message}")
            stored[seq] = message["data"]
    for seq, data in sorted(known.items()):
        if stored.get(seq) != data:
            raise Failure(f"acked seq {seq} (data {data}) is stored as {stored.get(seq)}")
    ordered = [data for _, data in sorted(stored.items()) if data >= burst_start(0)]
    for b in range(bursts):
        ofburst = [d for d in ordered if burst_start(b) <= d < burst_start(b + 1)]
        if ofburst != list(range(burst_start(b), burst_start(b) + len(ofburst))):
            raise Failure(f"burst {b} is not stored as a prefix")
    return stored, last


def burst_start(round):
    return (round + 1) * 100_000_000


async def main(binary, rounds):
    directory = tempfile.mkdtemp(prefix="replay-crash-serve-")
    known = {}
    try:
        for round in range(rounds + 1):
            serve = Serve(binary, directory)
            port = await serve.start()
            if round > 0:
                known, last = await asyncio.wait_for(verify(port, known, round, -round), TIMEOUT)
                print(f"  restart {round}: started cleanly; stored seqs 1…{last} contiguous (the last one "
                      f"published by this check), every acked message present", flush=True)
            if round == rounds:
                serve.process.terminate()
                status = await serve.wait()
                if status != 0:
                    raise Failure(f"SIGTERM: exit {status}")
                break
            kill_after = random.randint(2_000, 60_000)
            acked, in_flight = await asyncio.wait_for(
                burst_and_kill(serve, burst_start(round), kill_after), TIMEOUT)
            print(f"round {round + 1}: killed -9 at {kill_after} acks with {in_flight} publishes in flight; "
                  f"{len(acked)} acked in all (up to seq {max(acked)})", flush=True)
            for seq, data in acked.items():
                if seq in known:
                    raise Failure(f"seq {seq} acked again (data {data}, stored before as {known[seq]})")
                known[seq] = data
        print(f"OK: {rounds} kills of switchboard serve, no acked message lost, stored seqs contiguous")
    except (Failure, asyncio.TimeoutError) as error:
        print(f"FAIL: {error!r} (files kept in {directory})")
        return 1
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(64)
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)))
