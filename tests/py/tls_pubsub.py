"""A QoS 1 publish and subscribe round trip with paho-mqtt over TLS:
--cafile verifies the broker; --certfile/--keyfile present a client
certificate (mTLS)."""

from mqtt_common import Conn, base_args, check, main, unique


def run():
    p = base_args(__doc__)
    p.add_argument("--cafile", required=True)
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    a = p.parse_args()
    tls = {"ca_certs": a.cafile}
    if a.certfile:
        tls.update(certfile=a.certfile, keyfile=a.keyfile)
    topic = unique("py/tls")
    sub = Conn(a.host, a.port, unique("tls-sub"), a.protocol, tls=tls)
    sub.subscribe(topic, 1)
    pub = Conn(a.host, a.port, unique("tls-pub"), a.protocol, tls=tls)
    pub.publish(topic, b"over tls", 1)
    got = sub.receive(1)
    check([m.payload for m in got] == [b"over tls"], "the message arrived over TLS")
    pub.disconnect()
    sub.disconnect()


main(run)
