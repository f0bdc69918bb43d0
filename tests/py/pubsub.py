"""QoS 0/1/2 publish and subscribe round trip with paho-mqtt."""

from mqtt_common import Conn, base_args, check, log, main, unique


def run():
    p = base_args(__doc__)
    p.add_argument("--count", type=int, default=30)
    a = p.parse_args()
    root = unique("py/pubsub")
    sub = Conn(a.host, a.port, unique("sub"), a.protocol)
    sub.subscribe(root + "/#", 2)
    pub = Conn(a.host, a.port, unique("pub"), a.protocol)
    sent = {}
    for i in range(a.count):
        qos = i % 3
        payload = "m%d" % i
        sent[payload] = qos
        pub.publish("%s/q%d" % (root, qos), payload, qos)
    got = sub.receive(a.count)
    seen = {}
    for m in got:
        seen.setdefault(m.payload.decode(), []).append(m.qos)
    log("published", len(sent), "received", len(got))
    check(set(seen) == set(sent),
          "every message arrived (missing %s)" % sorted(set(sent) - set(seen)))
    for payload, qos in sent.items():
        if qos > 0:
            check(len(seen[payload]) >= 1, "%s delivered" % payload)
        check(seen[payload][0] == qos,
              "%s delivered at QoS %d (got %r)" % (payload, qos, seen[payload]))
        if qos == 2:
            check(len(seen[payload]) == 1, "QoS 2 %s delivered once" % payload)
    extra = sub.receive(1, timeout=0.5)
    check(not extra, "nothing extra (got %r)" % [m.payload for m in extra])
    pub.disconnect()
    sub.disconnect()


main(run)
