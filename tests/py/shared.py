"""Shared subscription: each message goes to exactly one member (paho-mqtt, MQTT 5)."""

import time

from mqtt_common import Conn, base_args, check, log, main, unique


def run():
    p = base_args(__doc__)
    p.add_argument("--count", type=int, default=20)
    a = p.parse_args()
    topic = unique("py/shared")
    members = [Conn(a.host, a.port, unique("m%d" % i), "5") for i in range(2)]
    for m in members:
        m.subscribe("$share/pygroup/" + topic, 1)
    pub = Conn(a.host, a.port, unique("pub"), "5")
    for i in range(a.count):
        pub.publish(topic, str(i), 1)
    per = [[], []]
    deadline = time.monotonic() + 5
    while sum(len(x) for x in per) < a.count and time.monotonic() < deadline:
        for i, m in enumerate(members):
            per[i] += [int(x.payload) for x in m.receive(a.count, timeout=0.05)]
    # Anything beyond count would be a duplicate delivery.
    for i, m in enumerate(members):
        per[i] += [int(x.payload) for x in m.receive(a.count, timeout=0.3)]
    log("per member:", per)
    allgot = sorted(per[0] + per[1])
    check(allgot == list(range(a.count)), "every message exactly once across the group")
    check(all(len(x) > 0 for x in per), "both members got messages")
    for m in members:
        m.disconnect()
    pub.disconnect()


main(run)
