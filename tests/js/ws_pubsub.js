// MQTT.js (node) over ws:// or wss://: subscribes to a topic, publishes to
// it and waits for its own message. Prints `received <payload>` and exits 0;
// exits 1 on an error or after 15 s.
// Usage: node ws_pubsub.js URL TOPIC [CAFILE]
const fs = require('fs');
const mqtt = require('mqtt');

const [url, topic, cafile] = process.argv.slice(2);
const opts = { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10000 };
if (cafile) {
  opts.ca = fs.readFileSync(cafile);
  opts.rejectUnauthorized = true;
}
const fail = (why) => { console.log('error ' + why); process.exit(1); };
setTimeout(() => fail('timeout'), 15000);
const c = mqtt.connect(url, opts);
c.on('error', (e) => fail(e.message));
c.on('connect', () => {
  c.subscribe(topic, { qos: 1 }, (err) => {
    if (err) return fail('subscribe: ' + err.message);
    c.publish(topic, 'hello over ' + url.split(':')[0], { qos: 1 });
  });
});
c.on('message', (t, payload) => {
  console.log('received ' + payload.toString());
  c.end(false, () => process.exit(0));
});
