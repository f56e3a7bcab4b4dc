"""Reads what a Redis sink sends with redis-py (a client no one here wrote):
subscribes to the sink's channel and run-job channel, prints `ready` once
both subscriptions are confirmed, then one JSON line per message received;
once the channel has brought EXPECTED distinct event ids (or nothing came
for IDLE_SECONDS), reads the stream from its start with XREAD and prints
one JSON line per entry; with --delete, deletes the stream afterwards.

usage: redis_sink.py URL CHANNEL RUN_JOB_CHANNEL STREAM EXPECTED IDLE_SECONDS [--delete]

Lines: {"source": "channel"|"run_job"|"stream", "id", "type", "seq"
(stream entries only), "stream_id" (the entry's id)}."""

import json
import sys
import time

import redis


def main():
    url, channel, run_job, stream, expected, idle = sys.argv[1:7]
    expected, idle = int(expected), float(idle)
    delete = "--delete" in sys.argv[7:]
    r = redis.Redis.from_url(url)
    pubsub = r.pubsub(ignore_subscribe_messages=False)
    pubsub.subscribe(channel, run_job)
    confirmed = 0
    while confirmed < 2:
        m = pubsub.get_message(timeout=10.0)
        if m is None:
            sys.exit("no subscription confirmation")
        if m["type"] == "subscribe":
            confirmed += 1
    print("ready", flush=True)

    seen = set()
    last = time.monotonic()
    while len(seen) < expected and time.monotonic() - last < idle:
        m = pubsub.get_message(timeout=0.2)
        if m is None or m["type"] != "message":
            continue
        last = time.monotonic()
        event = json.loads(m["data"])
        source = "channel" if m["channel"].decode() == channel else "run_job"
        if source == "channel":
            seen.add(event["id"])
        print(json.dumps({"source": source, "id": event["id"], "type": event["type"]}), flush=True)
    # What a late run-job message still brings (it follows its channel copy).
    while True:
        m = pubsub.get_message(timeout=0.5)
        if m is None:
            break
        if m["type"] == "message":
            event = json.loads(m["data"])
            source = "channel" if m["channel"].decode() == channel else "run_job"
            print(json.dumps({"source": source, "id": event["id"], "type": event["type"]}), flush=True)
    pubsub.close()

    after = "0-0"
    while True:
        got = r.xread({stream: after}, count=500)
        if not got:
            break
        for entry_id, fields in got[0][1]:
            after = entry_id
            event = json.loads(fields[b"event"])
            assert fields[b"id"].decode() == event["id"], "the id field is the event's"
            print(json.dumps({
                "source": "stream",
                "id": fields[b"id"].decode(),
                "type": fields[b"type"].decode(),
                "seq": int(fields[b"seq"]),
                "stream_id": entry_id.decode(),
            }), flush=True)
    if delete:
        r.delete(stream)


main()
