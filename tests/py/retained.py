"""Retained messages: kept for new subscribers with the retain flag, deleted
by an empty payload (paho-mqtt)."""

from mqtt_common import Conn, base_args, check, log, main, unique


def run():
    a = base_args(__doc__).parse_args()
    topic = unique("py/retained")
    pub = Conn(a.host, a.port, unique("pub"), a.protocol)
    pub.publish(topic, "kept", 1, retain=True)
    s1 = Conn(a.host, a.port, unique("s1"), a.protocol)
    s1.subscribe(topic, 1)
    got = s1.receive(1)
    check(len(got) == 1 and got[0].payload == b"kept", "retained message delivered")
    check(got[0].retain, "with the retain flag")
    s1.disconnect()
    pub.publish(topic, b"", 1, retain=True)
    s2 = Conn(a.host, a.port, unique("s2"), a.protocol)
    s2.subscribe(topic, 1)
    got = s2.receive(1, timeout=1.0)
    log("after delete:", [m.payload for m in got])
    check(not got, "retained message deleted by empty payload")
    s2.disconnect()
    pub.disconnect()


main(run)
