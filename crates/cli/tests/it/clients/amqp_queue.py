"""Reads a durable RabbitMQ queue with pika (a client no one here wrote)
and prints one JSON line per message, in queue order.

usage: amqp_queue.py URL EXCHANGE QUEUE EXPECTED IDLE_SECONDS [--setup] [--delete]

--setup declares the exchange (durable topic, as the sink does) and a
durable queue bound to it with '#', then exits. Otherwise it reads until
EXPECTED distinct message ids were read, or IDLE_SECONDS without a
message, acknowledging each; with --delete, deletes the queue and the
exchange afterwards."""

import json
import sys

import pika


def main():
    url, exchange, queue, expected, idle = sys.argv[1:6]
    expected, idle = int(expected), float(idle)
    flags = sys.argv[6:]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    if "--setup" in flags:
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, routing_key="#")
        connection.close()
        return
    seen = set()
    if expected > 0:
        channel.basic_qos(prefetch_count=500)
        for method, props, body in channel.consume(queue, inactivity_timeout=idle):
            if method is None:
                break
            headers = props.headers or {}
            event = json.loads(body)
            seen.add(props.message_id)
            print(json.dumps({
                "id": props.message_id,
                "seq": headers.get("cds-events-seq"),
                "type": headers.get("cds-events-type"),
                "routing_key": method.routing_key,
                "delivery_mode": props.delivery_mode,
                "content_type": props.content_type,
                "body_id": event.get("id"),
                "body_type": event.get("type"),
            }), flush=True)
            channel.basic_ack(method.delivery_tag)
            if len(seen) >= expected:
                break
        channel.cancel()
    if "--delete" in flags:
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    connection.close()


main()
