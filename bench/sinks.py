#!/usr/bin/env python3
"""The broker side of bench/sinks.sh, with each broker's stock Python client.

  sinks.py setup TAG                  RabbitMQ: the exchange and a bounded queue bound to it
  sinks.py cleanup TAG                delete the NATS stream, the RabbitMQ queue and exchange
  sinks.py consume KIND TAG ADDR N    read N events (or until idle), print latency as JSON
  sinks.py drain URL TOKEN NAME       resume a paused sink, time it until it reaches the head

TAG names everything this run creates on the shared brokers (the NATS
stream TAG_EVENTS on subjects TAG.events.>, the Redis channel TAG:event:ui,
the exchange and queue TAG.events, the Kafka topic TAG-events), so that a
run touches nothing else and leaves nothing behind.

Latency is the consumer's clock at receipt minus the event's `timestamp`,
which `cds-events simulate` stamps as it builds each request: publish ->
broker consumer, both on this machine's clock.
"""

import asyncio
import calendar
import json
import re
import sys
import time
import urllib.request

TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def epoch(ts):
    """Seconds since the epoch of a Go RFC 3339 timestamp (nanoseconds kept)."""
    m = TS.match(ts)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {ts!r}")
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = float("0" + m.group(2)) if m.group(2) else 0.0
    if m.group(3) != "Z":
        sign = 1 if m.group(3)[0] == "+" else -1
        hours, minutes = m.group(3)[1:].split(":")
        secs -= sign * (int(hours) * 3600 + int(minutes) * 60)
    return secs + frac


class Tally:
    """Every event received once, and its publish -> receipt latency."""

    def __init__(self, expected):
        self.expected = expected
        self.seen = set()
        self.duplicates = 0
        self.latencies = []
        self.last = time.monotonic()

    def add(self, body):
        now = time.time()
        self.last = time.monotonic()
        event = json.loads(body)
        if event["id"] in self.seen:
            self.duplicates += 1
            return
        self.seen.add(event["id"])
        self.latencies.append(now - epoch(event["timestamp"]))

    def done(self, idle):
        return len(self.seen) >= self.expected or (
            self.seen and time.monotonic() - self.last > idle
        )

    def report(self, kind):
        lat = sorted(self.latencies)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 2) if lat else None

        return {
            "kind": kind,
            "received": len(self.seen),
            "duplicates": self.duplicates,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
        }


def ready():
    print("ready", file=sys.stderr, flush=True)


async def consume_nats(tag, addr, tally, idle):
    import nats

    nc = await nats.connect(f"nats://{addr}")
    sub = await nc.subscribe(f"{tag}.events.>")
    await nc.flush()
    ready()
    while not tally.done(idle):
        try:
            msg = await sub.next_msg(timeout=0.2)
        except nats.errors.TimeoutError:
            continue
        tally.add(msg.data)
    await nc.close()


def consume_redis(tag, addr, tally, idle):
    import redis

    host, port = addr.split(":")
    pubsub = redis.Redis(host=host, port=int(port)).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{tag}:event:ui")
    while pubsub.get_message(timeout=0.1) is None and not pubsub.subscribed:
        pass
    ready()
    while not tally.done(idle):
        msg = pubsub.get_message(timeout=0.2)
        if msg:
            tally.add(msg["data"])


def consume_amqp(tag, addr, tally, idle):
    import pika

    host, port = addr.split(":")
    conn = pika.BlockingConnection(pika.ConnectionParameters(host, int(port)))
    ch = conn.channel()
    ch.queue_purge(f"{tag}.events")
    ch.basic_qos(prefetch_count=1000)
    ready()
    for method, _props, body in ch.consume(f"{tag}.events", auto_ack=True, inactivity_timeout=0.2):
        if method is not None:
            tally.add(body)
        if tally.done(idle):
            break
    ch.cancel()
    conn.close()


def consume_kafka(tag, addr, tally, idle):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=addr, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=5
    )
    topic = f"{tag}-events"
    deadline = time.monotonic() + 30
    partitions = []
    while not partitions:  # the sink creates the topic when it connects
        if time.monotonic() > deadline:
            raise SystemExit(f"no topic {topic}")
        partitions = sorted(consumer.partitions_for_topic(topic) or [])
        if not partitions:
            time.sleep(0.2)
            consumer.topics()  # refresh the metadata
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    ready()
    while not tally.done(idle):
        for records in consumer.poll(timeout_ms=100).values():
            for r in records:
                tally.add(r.value)
    consumer.close()


def consume(kind, tag, addr, expected, idle=5.0):
    tally = Tally(int(expected))
    if kind == "nats":
        asyncio.run(consume_nats(tag, addr, tally, idle))
    elif kind == "redis":
        consume_redis(tag, addr, tally, idle)
    elif kind == "amqp":
        consume_amqp(tag, addr, tally, idle)
    elif kind == "kafka":
        consume_kafka(tag, addr, tally, idle)
    else:
        raise SystemExit(f"unknown kind {kind}")
    print(json.dumps(tally.report(kind)), flush=True)


def setup(tag):
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    ch.exchange_declare(f"{tag}.events", exchange_type="topic", durable=True)
    # Durable, so that persistent messages are written as a real reader's
    # would be; bounded, so that a run that nobody reads does not fill the disk.
    ch.queue_declare(
        f"{tag}.events",
        durable=True,
        arguments={"x-max-length": 200000, "x-overflow": "drop-head"},
    )
    ch.queue_bind(f"{tag}.events", f"{tag}.events", routing_key="#")
    conn.close()


def cleanup(tag):
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    ch.queue_delete(f"{tag}.events")
    ch.exchange_delete(f"{tag}.events")
    conn.close()
    delete_nats_stream(tag)


def delete_nats_stream(tag):
    import nats

    async def run():
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            await nc.jetstream().delete_stream(f"{tag.upper()}_EVENTS")
        except nats.js.errors.NotFoundError:
            pass
        await nc.close()

    asyncio.run(run())


def drain(url, token, name):
    """Resumes the paused sink NAME and prints the seconds until its position is the head."""

    def call(method, path):
        req = urllib.request.Request(url + path, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req) as resp:
            return json.load(resp)

    start = time.monotonic()
    call("POST", f"/v2/sinks/{name}/resume")
    while True:
        sink = next(s for s in call("GET", "/v2/sinks")["sinks"] if s["name"] == name)
        if sink["position"] >= sink["head"] and sink["head"] > 0:
            break
        if sink["last_error"] and time.monotonic() - start > 60:
            raise SystemExit(f"sink {name}: {sink['last_error']}")
        time.sleep(0.05)
    print(json.dumps({"seconds": time.monotonic() - start, "events": sink["head"], "failed": sink["failed"]}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"setup": setup, "cleanup": cleanup, "consume": consume, "drain": drain}[command](*args)
