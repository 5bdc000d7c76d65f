#!/usr/bin/env python3
"""One paho-mqtt 2.x MQTT 5.0 client driven by a JSON plan, for tests/v5_clients.rs.

Usage: paho_client.py PLAN_JSON

The plan names the broker, the CONNECT (client id, Clean Start, keepalive, properties) and a list of steps
run in order once CONNACK has arrived. Everything the client sees is printed at once on stdout, one JSON
object per line with an "event" key: "connack", "message", "suback", "unsuback", "published",
"disconnect" (with "from_server": whether the broker sent a DISCONNECT), "ready", and finally "done" (the
plan ran to its end) or "error" (a step failed or timed out, or the deadline passed; the exit status is then
not 0). Binary values (payloads, Correlation Data) are given in hex.

The client never reconnects: the network loop is driven by hand and stops when the connection ends, so the
test sees exactly what the broker did. Every wait is bounded, and the whole run by the plan's "deadline".

Steps:
  {"op": "subscribe", "filter": F, "qos": Q, "no_local": B, "retain_as_published": B,
   "retain_handling": 0|1|2, "subscription_identifier": N}      -> waits for SUBACK
  {"op": "unsubscribe", "filter": F}                            -> waits for UNSUBACK
  {"op": "publish", "topic": T, "payload": S | "payload_hex": H, "qos": Q, "retain": B,
   "properties": {...}}                                          -> waits for PUBACK/PUBCOMP (or the write)
  {"op": "ready"}                                               -> prints {"event": "ready"}
  {"op": "wait_messages", "count": N, "timeout": S}             -> waits until N messages arrived in all
  {"op": "linger", "secs": S}                                   -> lets time pass (quiet windows, keepalive)
  {"op": "wait_disconnect", "timeout": S}                       -> waits until the connection ends
  {"op": "disconnect", "properties": {...}}                     -> sends DISCONNECT and waits for the close
  {"op": "expect_connected"}                                    -> fails if the connection has ended
Properties are given by paho's names without spaces: {"UserProperty": [["a", "1"]], "ContentType": "x",
"CorrelationData": {"hex": "00ff"}, "TopicAlias": 1, ...}.
"""

import json
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

OUT = threading.Lock()
STEP_TIMEOUT = 5.0


def emit(event, **fields):
    fields["event"] = event
    with OUT:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def props_to_json(props):
    if props is None:
        return {}
    out = {}
    for name in props.names:
        short = name.replace(" ", "")
        if hasattr(props, short):
            out[short] = jsonable(getattr(props, short))
    return out


def props_from_json(packet_type, spec):
    if not spec:
        return None
    props = Properties(packet_type)
    for name, value in spec.items():
        if isinstance(value, dict) and "hex" in value:
            value = bytes.fromhex(value["hex"])
        elif name == "UserProperty":
            value = [tuple(pair) for pair in value]
        setattr(props, name, value)
    return props


def code(reason):
    return int(reason.value) if hasattr(reason, "value") else int(reason)


class Runner:
    def __init__(self, plan):
        self.plan = plan
        self.cond = threading.Condition()
        self.connack = None
        self.messages = 0
        self.acks = {}
        self.closed = False
        self.stop = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=plan.get("client_id", ""),
            protocol=mqtt.MQTTv5,
        )
        client.on_connect = self.on_connect
        client.on_message = self.on_message
        client.on_subscribe = self.on_subscribe
        client.on_unsubscribe = self.on_unsubscribe
        client.on_publish = self.on_publish
        client.on_disconnect = self.on_disconnect
        self.client = client

    # Callbacks, on the network thread.

    def on_connect(self, client, userdata, flags, reason_code, properties):
        emit(
            "connack",
            reason_code=code(reason_code),
            session_present=bool(flags.session_present),
            properties=props_to_json(properties),
        )
        with self.cond:
            self.connack = code(reason_code)
            self.cond.notify_all()

    def on_message(self, client, userdata, msg):
        payload = bytes(msg.payload)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        emit(
            "message",
            topic=msg._topic.decode("utf-8", "replace"),
            payload=text,
            payload_hex=payload.hex(),
            qos=msg.qos,
            retain=bool(msg.retain),
            properties=props_to_json(msg.properties),
        )
        with self.cond:
            self.messages += 1
            self.cond.notify_all()

    def acked(self, kind, mid, value):
        with self.cond:
            self.acks[(kind, mid)] = value
            self.cond.notify_all()

    def on_subscribe(self, client, userdata, mid, reason_codes, properties):
        codes = [code(r) for r in reason_codes]
        emit("suback", reason_codes=codes, properties=props_to_json(properties))
        self.acked("sub", mid, codes)

    def on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        codes = [code(r) for r in reason_codes]
        emit("unsuback", reason_codes=codes, properties=props_to_json(properties))
        self.acked("unsub", mid, codes)

    def on_publish(self, client, userdata, mid, reason_code, properties):
        self.acked("pub", mid, code(reason_code))

    def on_disconnect(self, client, userdata, flags, reason_code, properties):
        emit(
            "disconnect",
            reason_code=code(reason_code),
            from_server=bool(flags.is_disconnect_packet_from_server),
            properties=props_to_json(properties),
        )
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # The network loop, driven by hand so that nothing reconnects.

    def network(self):
        while not self.stop.is_set():
            rc = self.client.loop(timeout=0.02)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, what, predicate, timeout=STEP_TIMEOUT):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise RuntimeError(f"timed out after {timeout}s waiting for {what}")

    def wait_ack(self, kind, mid, what):
        self.wait(what, lambda: (kind, mid) in self.acks or self.closed)
        if (kind, mid) not in self.acks:
            raise RuntimeError(f"connection closed while waiting for {what}")
        return self.acks[(kind, mid)]

    # Steps.

    def run(self):
        plan = self.plan
        self.client.connect(
            plan["host"],
            plan["port"],
            keepalive=plan.get("keepalive", 30),
            clean_start=plan.get("clean_start", True),
            properties=props_from_json(PacketTypes.CONNECT, plan.get("connect_properties")),
        )
        thread = threading.Thread(target=self.network, daemon=True)
        # Marks the client as threaded, as loop_start() would, so that calls from this thread queue their
        # packets for the network thread instead of writing to the socket themselves.
        self.client._thread = thread
        thread.start()
        self.wait("CONNACK", lambda: self.connack is not None or self.closed)
        if self.connack is None:
            raise RuntimeError("connection closed before CONNACK")
        for step in plan.get("steps", []):
            getattr(self, "op_" + step["op"])(step)
        self.stop.set()
        thread.join(STEP_TIMEOUT)

    def op_subscribe(self, step):
        options = SubscribeOptions(
            qos=step.get("qos", 0),
            noLocal=step.get("no_local", False),
            retainAsPublished=step.get("retain_as_published", False),
            retainHandling=step.get("retain_handling", 0),
        )
        props = None
        if "subscription_identifier" in step:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = step["subscription_identifier"]
        rc, mid = self.client.subscribe(step["filter"], options=options, properties=props)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe failed locally: {rc}")
        self.wait_ack("sub", mid, "SUBACK")

    def op_unsubscribe(self, step):
        rc, mid = self.client.unsubscribe(step["filter"])
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"unsubscribe failed locally: {rc}")
        self.wait_ack("unsub", mid, "UNSUBACK")

    def op_publish(self, step):
        if "payload_hex" in step:
            payload = bytes.fromhex(step["payload_hex"])
        else:
            payload = step.get("payload", "").encode("utf-8")
        info = self.client.publish(
            step["topic"],
            payload,
            qos=step.get("qos", 0),
            retain=step.get("retain", False),
            properties=props_from_json(PacketTypes.PUBLISH, step.get("properties")),
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed locally: {info.rc}")
        reason = self.wait_ack("pub", info.mid, "the end of a PUBLISH exchange")
        emit("published", mid=info.mid, reason_code=reason)

    def op_ready(self, step):
        emit("ready")

    def op_wait_messages(self, step):
        count = step["count"]
        self.wait(f"{count} message(s)", lambda: self.messages >= count, step.get("timeout", STEP_TIMEOUT))

    def op_linger(self, step):
        time.sleep(step["secs"])

    def op_wait_disconnect(self, step):
        self.wait("the end of the connection", lambda: self.closed, step.get("timeout", STEP_TIMEOUT))

    def op_expect_connected(self, step):
        with self.cond:
            if self.closed:
                raise RuntimeError("the connection has ended")

    def op_disconnect(self, step):
        self.client.disconnect(
            properties=props_from_json(PacketTypes.DISCONNECT, step.get("properties"))
        )
        self.wait("the close after DISCONNECT", lambda: self.closed)


def main():
    plan = json.loads(sys.argv[1])
    deadline = plan.get("deadline", 20)
    # A hard bound on the whole run, whatever happens to the threads.
    def give_up():
        emit("error", message=f"deadline of {deadline}s")
        os._exit(2)

    killer = threading.Timer(deadline, give_up)
    killer.daemon = True
    killer.start()
    try:
        Runner(plan).run()
    except Exception as e:  # reported to the test, which fails on it
        emit("error", message=f"{type(e).__name__}: {e}")
        sys.stdout.flush()
        return 1
    emit("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
