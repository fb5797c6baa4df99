#!/usr/bin/env python3
"""Zipf /v1/embeddings load spread round robin over several servers (stdlib only).

Draws REQUESTS ranks k in 0..DISTINCT-1 with P(k) proportional to
1/(k+1)^S, with the same xorshift generator and CDF as `embed load --zipf`
(benches/embed.rs, `zipf_sequence`), so a seed gives the same sequence as
embed_zipf.sh. Request i (one text, line k of TEXTS) goes to server
i mod len(PORTS), all on 127.0.0.1, from CONCURRENCY threads, each with
one keep-alive connection per server. Every answer must be 200.

    benches/load/fleet_load.py --ports 17841,17842,17843 --texts FILE
        [--requests 3000] [--distinct 1000] [--zipf 1.1] [--seed 42]
        [--concurrency 24] [--model minilm]

The last line is `RESULT requests=... distinct=... errors=... secs=...
hit=... coalesced=... miss=...` (counts of the X-Cache header).
"""

import argparse
import bisect
import http.client
import json
import threading
import time

MASK = (1 << 64) - 1


def zipf_sequence(n, distinct, s, seed):
    weights = [float(k) ** -s for k in range(1, distinct + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    state = max(seed, 1)
    out = []
    for _ in range(n):
        state ^= (state << 13) & MASK
        state ^= state >> 7
        state ^= (state << 17) & MASK
        u = (state >> 11) / float(1 << 53)
        out.append(min(bisect.bisect_left(cdf, u), distinct - 1))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ports", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--distinct", type=int, default=1000)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--concurrency", type=int, default=24)
    p.add_argument("--model", default="minilm")
    a = p.parse_args()

    ports = [int(x) for x in a.ports.split(",")]
    with open(a.texts) as f:
        texts = [line.rstrip("\n") for line in f if line.strip()]
    assert a.distinct <= len(texts), "--distinct exceeds the texts"
    seq = zipf_sequence(a.requests, a.distinct, a.zipf, a.seed)
    bodies = [
        json.dumps({"model": a.model, "input": texts[k], "encoding_format": "base64"}).encode()
        for k in seq
    ]
    lock = threading.Lock()
    nxt = [0]
    tally = {"errors": 0, "hit": 0, "coalesced": 0, "miss": 0, "other": 0}
    first_error = []

    def worker():
        conns = {port: http.client.HTTPConnection("127.0.0.1", port, timeout=120) for port in ports}
        counts = dict.fromkeys(tally, 0)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(bodies):
                break
            port = ports[i % len(ports)]
            try:
                c = conns[port]
                c.request("POST", "/v1/embeddings", body=bodies[i],
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    counts["errors"] += 1
                    if not first_error:
                        first_error.append(f"{r.status} from :{port}")
                    continue
                x = r.getheader("X-Cache", "")
                counts[x if x in ("hit", "coalesced", "miss") else "other"] += 1
            except Exception as e:  # noqa: BLE001 (counted, the run fails)
                counts["errors"] += 1
                if not first_error:
                    first_error.append(f"{e!r} from :{port}")
                conns[port].close()
                conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        with lock:
            for k, v in counts.items():
                tally[k] += v
        for c in conns.values():
            c.close()

    print(f"# fleet load: {len(bodies)} requests ({len(set(seq))} distinct texts, zipf s={a.zipf}, "
          f"seed {a.seed}) round robin over ports {a.ports}, {a.concurrency} threads, model {a.model}")
    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - start
    if first_error:
        print(f"# first error: {first_error[0]}")
    print(f"RESULT requests={len(bodies)} distinct={len(set(seq))} errors={tally['errors']} "
          f"secs={secs:.2f} hit={tally['hit']} coalesced={tally['coalesced']} "
          f"miss={tally['miss']} other={tally['other']}")


if __name__ == "__main__":
    main()
