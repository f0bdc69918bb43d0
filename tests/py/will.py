"""The will is published when a client goes away without DISCONNECT, and not
after a clean DISCONNECT (paho-mqtt)."""

from mqtt_common import Conn, base_args, check, log, main, unique


def run():
    a = base_args(__doc__).parse_args()
    topic = unique("py/will")
    watch = Conn(a.host, a.port, unique("watch"), a.protocol)
    watch.subscribe(topic, 1)

    polite = Conn(a.host, a.port, unique("polite"), a.protocol,
                  will={"topic": topic, "payload": "polite-will", "qos": 1})
    polite.disconnect()
    rude = Conn(a.host, a.port, unique("rude"), a.protocol,
                will={"topic": topic, "payload": "rude-will", "qos": 1})
    rude.drop()
    got = [m.payload.decode() for m in watch.receive(1, timeout=5)]
    log("received:", got)
    # The polite client's will, if wrongly sent, would have come first.
    check(got == ["rude-will"], "the abruptly closed client's will (and not the polite one's)")
    extra = [m.payload.decode() for m in watch.receive(1, timeout=0.5)]
    check(not extra, "nothing else (got %r)" % extra)
    watch.disconnect()


main(run)
