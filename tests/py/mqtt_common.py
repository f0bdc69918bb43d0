"""Shared helpers for the paho-mqtt test scripts.

Works with paho-mqtt 1.6 (Debian's python3-paho-mqtt) and 2.x. Every wait is
bounded; failures raise CheckFailed, which main() turns into exit status 1.
"""

import argparse
import queue
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

PROTOCOLS = {"31": mqtt.MQTTv31, "311": mqtt.MQTTv311, "5": mqtt.MQTTv5}
WAIT = 10.0


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)
    print("ok:", what, flush=True)


def log(*a):
    print(*a, flush=True)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def base_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="311")
    return p


def props(packet_type, **values):
    pr = Properties(packet_type)
    for k, v in values.items():
        setattr(pr, k, v)
    return pr


class Conn:
    """A paho client running its network loop in a thread, with queues for
    what arrives, and bounded waits."""

    def __init__(self, host, port, client_id="", protocol="311", clean=True,
                 session_expiry=None, keepalive=30, will=None,
                 connect_properties=None, tls=None):
        self.protocol = protocol
        self.v5 = protocol == "5"
        kwargs = {"client_id": client_id, "protocol": PROTOCOLS[protocol]}
        if not self.v5:
            kwargs["clean_session"] = clean
        if hasattr(mqtt, "CallbackAPIVersion"):
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, **kwargs)
        else:
            self.c = mqtt.Client(**kwargs)
        self.connected = threading.Event()
        self.connack = None
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        if will is not None:
            self.c.will_set(**will)
        if tls is not None:
            # tls: keyword arguments of paho's tls_set (ca_certs, certfile,
            # keyfile).
            self.c.tls_set(**tls)
        cp = connect_properties
        if self.v5 and session_expiry is not None:
            if cp is None:
                cp = Properties(PacketTypes.CONNECT)
            cp.SessionExpiryInterval = session_expiry
        if self.v5:
            self.c.connect(host, port, keepalive, clean_start=clean, properties=cp)
        else:
            self.c.connect(host, port, keepalive)
        self.c.loop_start()
        if not self.connected.wait(WAIT):
            self.c.loop_stop()
            raise CheckFailed("no CONNACK for %r within %ss" % (client_id, WAIT))
        rc = self.connack["rc"]
        rc_value = getattr(rc, "value", rc)
        if rc_value != 0:
            raise CheckFailed("connection refused for %r: %r" % (client_id, rc))

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connack = {"flags": flags, "rc": rc, "properties": properties}
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, *rest):
        self.subacks.put((mid, rest[0] if rest else None))

    @property
    def session_present(self):
        return bool(self.connack["flags"].get("session present"))

    def subscribe(self, topic, qos, properties=None):
        if self.v5 and properties is not None:
            rc, mid = self.c.subscribe(topic, qos, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        check(rc == mqtt.MQTT_ERR_SUCCESS, "SUBSCRIBE %s sent" % topic)
        try:
            got_mid, codes = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise CheckFailed("no SUBACK for %s" % topic)
        codes = [getattr(c, "value", c) for c in (codes or [])]
        check(got_mid == mid and codes and codes[0] == qos,
              "SUBACK for %s grants QoS %d (got %r)" % (topic, qos, codes))

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        if self.v5 and properties is not None:
            info = self.c.publish(topic, payload, qos, retain, properties=properties)
        else:
            info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish(WAIT)
        check(info.is_published(), "PUBLISH %s (QoS %d) acknowledged" % (topic, qos))

    def receive(self, n, timeout=WAIT):
        """Up to n messages within timeout."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self):
        """Close the socket without DISCONNECT (the will fires)."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


def main(fn):
    try:
        fn()
    except CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
    print("PASSED", flush=True)
    sys.exit(0)
