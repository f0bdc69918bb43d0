"""MQTT 5 publish properties pass through the broker unchanged (paho-mqtt)."""

from mqtt_common import Conn, PacketTypes, base_args, check, log, main, props, unique


def run():
    a = base_args(__doc__).parse_args()
    topic = unique("py/props")
    sub = Conn(a.host, a.port, unique("sub"), "5")
    sub.subscribe(topic, 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42))
    pub = Conn(a.host, a.port, unique("pub"), "5")
    pr = props(PacketTypes.PUBLISH,
               UserProperty=[("k1", "v1"), ("k2", "v2"), ("k1", "again")],
               ContentType="application/json",
               ResponseTopic="py/reply",
               CorrelationData=b"\x00\x01corr",
               PayloadFormatIndicator=1,
               MessageExpiryInterval=120)
    pub.publish(topic, '{"a": 1}', 1, properties=pr)
    got = sub.receive(1)
    check(len(got) == 1, "message received")
    m = got[0]
    mp = m.properties
    log("received properties:", mp)
    check(m.payload == b'{"a": 1}', "payload unchanged")
    check(list(getattr(mp, "UserProperty", [])) == [("k1", "v1"), ("k2", "v2"), ("k1", "again")],
          "user properties in order with duplicates")
    check(getattr(mp, "ContentType", None) == "application/json", "content type")
    check(getattr(mp, "ResponseTopic", None) == "py/reply", "response topic")
    check(getattr(mp, "CorrelationData", None) == b"\x00\x01corr", "correlation data")
    check(getattr(mp, "PayloadFormatIndicator", None) == 1, "payload format indicator")
    expiry = getattr(mp, "MessageExpiryInterval", None)
    check(expiry is not None and 115 <= expiry <= 120, "message expiry forwarded (%r)" % expiry)
    check(getattr(mp, "SubscriptionIdentifier", None) == [42], "subscription identifier 42")
    pub.disconnect()
    sub.disconnect()


main(run)
