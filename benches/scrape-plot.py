#!/usr/bin/env python3
"""Scrape a raftmq node's /metrics every second and plot a few series.

Grafana is not needed: the samples go to a JSON-lines file, the plot to an
HTML page of SVG charts, and headless chromium (if installed) turns the page
into a PNG. Standard library only.

    benches/scrape-plot.py --url http://127.0.0.1:8888/metrics --seconds 60 \
        --out /tmp/metrics-plot.png [--samples scrape.jsonl] [--title TEXT]
    benches/scrape-plot.py --replay scrape.jsonl --out plot.png   # plot only

Charts: PUBLISH in/out per second by QoS, commit and WAL fsync latency
(p50/p99 over the last 5 s, computed from the histogram buckets as
Prometheus' histogram_quantile does), resident memory, open descriptors,
RocksDB memory, and CONNACKs per second by reason code.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{series: value}, series as name plus sorted labels."""
    out = {}
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(LABEL.findall(m.group(2) or '')))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            pass
    return out


def scrape(url, seconds, samples_path):
    rows = []
    with open(samples_path, 'w') as f:
        start = time.time()
        while time.time() - start < seconds:
            t = time.time()
            try:
                text = urllib.request.urlopen(url, timeout=2).read().decode()
            except OSError as e:
                print(f'scrape failed: {e}', file=sys.stderr)
                time.sleep(1)
                continue
            row = {'t': t - start, 'text': text}
            f.write(json.dumps(row) + '\n')
            rows.append(row)
            time.sleep(max(0.0, 1.0 - (time.time() - t)))
    return rows


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def series_sum(m, name, **want):
    return sum(v for (n, ls), v in m.items()
               if n == name and all(dict(ls).get(k) == w for k, w in want.items()))


def label_values(ms, name, label):
    vals = set()
    for m in ms:
        for (n, ls), _ in m.items():
            if n == name and label in dict(ls):
                vals.add(dict(ls)[label])
    return sorted(vals)


def rate(ts, ms, name, window=1, **want):
    pts = []
    for i in range(window, len(ms)):
        dt = ts[i] - ts[i - window]
        dv = series_sum(ms[i], name, **want) - series_sum(ms[i - window], name, **want)
        if dt > 0:
            pts.append((ts[i], max(dv, 0) / dt))
    return pts


def quantile(ts, ms, hist, q, window=5):
    """histogram_quantile over the bucket increase in the last `window` scrapes."""
    pts = []
    for i in range(window, len(ms)):
        buckets = []
        for (n, ls), v in ms[i].items():
            if n == hist + '_bucket':
                le = dict(ls)['le']
                old = ms[i - window].get((n, ls), 0.0)
                buckets.append((float('inf') if le == '+Inf' else float(le), v - old))
        buckets.sort()
        if not buckets or buckets[-1][1] <= 0:
            continue
        rank = q * buckets[-1][1]
        prev_le, prev_c = 0.0, 0.0
        for le, c in buckets:
            if c >= rank:
                if le == float('inf'):
                    value = prev_le
                else:
                    value = prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
                pts.append((ts[i], value))
                break
            prev_le, prev_c = le, c
    return pts


def gauge(ts, ms, name, **want):
    return [(t, series_sum(m, name, **want)) for t, m in zip(ts, ms)]


COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2']


def fmt(v, unit):
    if unit == 'bytes':
        for u in ['B', 'KiB', 'MiB', 'GiB']:
            if abs(v) < 1024 or u == 'GiB':
                return f'{v:.0f} {u}' if u == 'B' else f'{v:.1f} {u}'
            v /= 1024
    if unit == 's':
        return f'{v * 1000:.2f} ms' if v < 1 else f'{v:.2f} s'
    if abs(v) >= 1000:
        return f'{v / 1000:.1f}k'
    return f'{v:.0f}' if v == int(v) else f'{v:.2f}'


def chart(title, lines, unit, w=440, h=250):
    """One SVG line chart; lines = [(label, [(t, v)])]."""
    pad_l, pad_r, pad_t, pad_b = 70, 10, 28, 48
    all_pts = [p for _, pts in lines for p in pts]
    svg = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" '
           f'style="background:#fff;border:1px solid #ccc;margin:4px">',
           f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14" '
           f'font-family="sans-serif" font-weight="bold">{title}</text>']
    if not all_pts:
        svg.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" '
                   f'font-family="sans-serif">no data</text></svg>')
        return ''.join(svg)
    t0, t1 = min(p[0] for p in all_pts), max(p[0] for p in all_pts)
    v1 = max(p[1] for p in all_pts) * 1.1 or 1.0
    t1 = t1 if t1 > t0 else t0 + 1
    pw, ph = w - pad_l - pad_r, h - pad_t - pad_b

    def x(t):
        return pad_l + (t - t0) / (t1 - t0) * pw

    def y(v):
        return pad_t + ph - v / v1 * ph

    for k in range(5):
        v = v1 * k / 4
        svg.append(f'<line x1="{pad_l}" x2="{w - pad_r}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        svg.append(f'<text x="{pad_l - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="10" '
                   f'font-family="sans-serif">{fmt(v, unit)}</text>')
    for k in range(5):
        t = t0 + (t1 - t0) * k / 4
        svg.append(f'<text x="{x(t):.1f}" y="{pad_t + ph + 14}" text-anchor="middle" font-size="10" '
                   f'font-family="sans-serif">{t:.0f}s</text>')
    svg.append(f'<rect x="{pad_l}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    lx = pad_l
    for i, (label, pts) in enumerate(lines):
        c = COLORS[i % len(COLORS)]
        if pts:
            d = ' '.join(f'{x(t):.1f},{y(v):.1f}' for t, v in pts)
            svg.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="1.6"/>')
        svg.append(f'<rect x="{lx}" y="{h - 16}" width="10" height="3" fill="{c}"/>')
        svg.append(f'<text x="{lx + 13}" y="{h - 11}" font-size="10" font-family="sans-serif">{label}</text>')
        lx += 13 + 6.2 * len(label) + 10
    svg.append('</svg>')
    return ''.join(svg)


def page(rows, title):
    ts = [r['t'] for r in rows]
    ms = [parse(r['text']) for r in rows]
    charts = []
    pub = []
    for q in label_values(ms, 'raftmq_mqtt_publish_received_total', 'qos'):
        pub.append((f'in qos {q}', rate(ts, ms, 'raftmq_mqtt_publish_received_total', qos=q)))
    for q in label_values(ms, 'raftmq_mqtt_publish_sent_total', 'qos'):
        pub.append((f'out qos {q}', rate(ts, ms, 'raftmq_mqtt_publish_sent_total', qos=q)))
    charts.append(chart('PUBLISH packets per second', pub, 'count'))
    charts.append(chart('Commit latency (propose to apply)', [
        ('p50', quantile(ts, ms, 'raftmq_raft_commit_seconds', 0.5)),
        ('p99', quantile(ts, ms, 'raftmq_raft_commit_seconds', 0.99))], 's'))
    charts.append(chart('WAL fsync latency', [
        ('p50', quantile(ts, ms, 'raftmq_raft_wal_fsync_seconds', 0.5)),
        ('p99', quantile(ts, ms, 'raftmq_raft_wal_fsync_seconds', 0.99))], 's'))
    charts.append(chart('Resident memory', [
        ('RSS', gauge(ts, ms, 'raftmq_process_resident_memory_bytes'))], 'bytes'))
    charts.append(chart('RocksDB memory', [
        ('memtables', gauge(ts, ms, 'raftmq_rocksdb_memtable_bytes')),
        ('block cache', gauge(ts, ms, 'raftmq_rocksdb_block_cache_bytes'))], 'bytes'))
    charts.append(chart('Open file descriptors', [
        ('fds', gauge(ts, ms, 'raftmq_process_open_fds'))], 'count'))
    conn = [(rc, rate(ts, ms, 'raftmq_mqtt_connack_sent_total', reason_code=rc))
            for rc in label_values(ms, 'raftmq_mqtt_connack_sent_total', 'reason_code')]
    charts.append(chart('CONNACKs per second by reason code', conn, 'count'))
    charts.append(chart('Apply batch size (mean entries, 5 s)', [
        ('entries/batch', [(t, a / b) for (t, a), (_, b) in zip(
            rate(ts, ms, 'raftmq_raft_apply_batch_entries_sum', 5),
            rate(ts, ms, 'raftmq_raft_apply_batch_entries_count', 5)) if b > 0])], 'count'))
    charts.append(chart('Queue drops per second by reason', [
        (r, rate(ts, ms, 'raftmq_queue_message_drop_total', reason=r))
        for r in label_values(ms, 'raftmq_queue_message_drop_total', 'reason')
        if any(v for _, v in rate(ts, ms, 'raftmq_queue_message_drop_total', reason=r))] or [], 'count'))
    return (f'<html><body style="margin:8px;font-family:sans-serif;background:#f4f4f4">'
            f'<h3 style="margin:4px">{title}</h3>'
            f'<div style="display:flex;flex-wrap:wrap;width:1380px">{"".join(charts)}</div>'
            f'</body></html>')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--url', default='http://127.0.0.1:8888/metrics')
    ap.add_argument('--seconds', type=float, default=60)
    ap.add_argument('--samples', help='write the scrapes here (JSON lines)')
    ap.add_argument('--replay', help='plot these scrapes instead of scraping')
    ap.add_argument('--out', required=True, help='PNG (or .html) to write')
    ap.add_argument('--title', default='raftmq: a plotted /metrics scrape (1 s interval)')
    a = ap.parse_args()
    if a.replay:
        rows = load(a.replay)
    else:
        path = a.samples or tempfile.mktemp(suffix='.jsonl')
        rows = scrape(a.url, a.seconds, path)
        print(f'{len(rows)} scrapes in {path}')
    html = page(rows, a.title)
    if a.out.endswith('.html'):
        open(a.out, 'w').write(html)
        return
    browser = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if not browser:
        sys.exit('no chromium to render the PNG; use --out FILE.html')
    with tempfile.TemporaryDirectory() as d:
        hp = os.path.join(d, 'plot.html')
        open(hp, 'w').write(html)
        subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                        f'--screenshot={os.path.abspath(a.out)}', '--window-size=1400,860',
                        f'file://{hp}'], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()
