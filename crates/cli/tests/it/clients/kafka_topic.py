"""Reads a Kafka topic from its start with kafka-python (a client no one
here wrote) and prints one JSON line per record: partition by partition is
not promised across partitions, in offset order within each.

usage: kafka_topic.py BOOTSTRAP TOPIC EXPECTED IDLE_SECONDS

Stops once EXPECTED distinct event ids were read, or after IDLE_SECONDS
without a record. Each line also says in which partition kafka-python's
own default partitioner (murmur2 of the key) would put the record."""

import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2


def main():
    bootstrap, topic, expected, idle = sys.argv[1:5]
    expected, idle = int(expected), float(idle)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    partitions = sorted(consumer.partitions_for_topic(topic) or [])
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    seen = set()
    last = time.monotonic()
    while len(seen) < expected and time.monotonic() - last < idle:
        batches = consumer.poll(timeout_ms=200)
        for tp, records in batches.items():
            for r in records:
                last = time.monotonic()
                headers = {k: v.decode() for k, v in r.headers}
                body = json.loads(r.value)
                seen.add(headers.get("cds-events-id"))
                print(json.dumps({
                    "id": headers.get("cds-events-id"),
                    "seq": int(headers.get("cds-events-seq", "0")),
                    "type": headers.get("cds-events-type"),
                    "key": r.key.decode(),
                    "partition": tp.partition,
                    "offset": r.offset,
                    "default_partition": partitions[(murmur2(r.key) & 0x7fffffff) % len(partitions)],
                    "body_id": body.get("id"),
                    "body_run": body.get("workflow_run_id"),
                }), flush=True)
    consumer.close()


main()
