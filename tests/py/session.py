"""A persistent session is resumed (session present) and gets the messages
published while it was offline (paho-mqtt)."""

from mqtt_common import Conn, base_args, check, log, main, unique


def run():
    a = base_args(__doc__).parse_args()
    topic = unique("py/session")
    cid = unique("persist")
    s = Conn(a.host, a.port, cid, a.protocol, clean=False, session_expiry=300)
    check(not s.session_present, "first connection has no session")
    s.subscribe(topic, 1)
    s.disconnect()
    pub = Conn(a.host, a.port, unique("pub"), a.protocol)
    for i in range(3):
        pub.publish(topic, "offline-%d" % i, 1)
    pub.disconnect()
    s = Conn(a.host, a.port, cid, a.protocol, clean=False, session_expiry=300)
    check(s.session_present, "session present on reconnect")
    got = [m.payload.decode() for m in s.receive(3)]
    log("received:", got)
    check(got == ["offline-0", "offline-1", "offline-2"], "offline messages in order")
    s.disconnect()


main(run)
