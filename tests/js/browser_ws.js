// Loads page.html in headless Chromium (Debian's, through puppeteer-core),
// waits until the page has subscribed over ws://, publishes one message from
// node over plain TCP (mqtt://), waits until the page shows it, takes a
// screenshot and prints the page title. Exits 1 after 30 s or on an error.
// Usage: node browser_ws.js PAGE_URL TCP_PORT TOPIC SCREENSHOT USER_DATA_DIR
const mqtt = require('mqtt');
const puppeteer = require('puppeteer-core');

const [pageUrl, tcpPort, topic, shot, userDataDir] = process.argv.slice(2);
const fail = (why) => { console.log('error ' + why); process.exit(1); };
setTimeout(() => fail('timeout'), 30000);

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 800, height: 400 });
  await page.goto(pageUrl);
  await page.waitForFunction(() => document.title !== 'connecting', { timeout: 20000 });
  if (await page.title() !== 'subscribed') fail('page: ' + await page.title());
  const pub = mqtt.connect('mqtt://127.0.0.1:' + tcpPort, { reconnectPeriod: 0 });
  pub.on('error', (e) => fail('publisher: ' + e.message));
  pub.on('connect', () => pub.publish(topic, 'hello browser', { qos: 1 }));
  await page.waitForFunction(() => document.title.startsWith('received'), { timeout: 20000 });
  await page.screenshot({ path: shot });
  console.log('title ' + await page.title());
  pub.end(true);
  await browser.close();
  process.exit(0);
})().catch((e) => fail(e.message));
