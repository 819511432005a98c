#!/usr/bin/env python3
"""Load generator for scripts/bench-engine.sh: the same requests against any
OpenAI-compatible server, measured the same way from the client side.

- prefill_tok_s: prompt tokens / time to the first streamed token (1 client)
- decode_tok_s:  tokens after the first / time from first to last token (1 client)
- agg4_tok_s:    generated tokens of all clients / wall time, CLIENTS at once
- rss_mb:        the server's resident memory after the run
Each request has its own prompt number, and --extra-body sends both servers
cache_prompt: false, so no server reuses a cached prompt prefix.
Prints: NAME decode_tok_s=N prefill_tok_s=N agg4_tok_s=N rss_mb=N

With --cache MODE[,MODE] it measures the prompt cache instead: the time to
first token of a conversation's second turn, whose first turn made a
~1,000-token context (a ~900-token system message, a question and a
16-token answer) that the second resends whole. MODE `reuse` sends
cache_prompt: true, `noreuse` false; each repetition is a new conversation.
Prints: ttft_ms_MODE=N ... prompt_tokens=N (medians over --rounds; the
second turn's prompt)
"""
import argparse
import http.client
import json
import statistics
import threading
import time
from urllib.parse import urlparse

PROMPT = (
    "You are a careful historian. Request {n:04d}. Write a long, detailed essay about the "
    "history of the Roman Empire, from its founding to its fall, with many names and dates."
)


# Fields only one server takes (llama-server's cache_prompt): --extra-body.
EXTRA = {}


def stream_chat(url, n, tokens):
    """One greedy streamed request; returns (prompt_tokens, completion_tokens, t0, t_first, t_last)."""
    messages = [{"role": "user", "content": PROMPT.format(n=n)}]
    return stream_messages(url, messages, tokens, EXTRA)[:5]


def stream_messages(url, messages, tokens, extra):
    """Streams a greedy answer to `messages`; returns (prompt_tokens,
    completion_tokens, t0, t_first, t_last, text)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({
        "model": "bench",
        "messages": messages,
        "temperature": 0,
        "max_tokens": tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    })
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"{url}: HTTP {resp.status}: {resp.read()[:300]!r}")
    t_first = t_last = None
    usage = None
    text = []
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                text.append(choice["delta"]["content"])
                now = time.perf_counter()
                t_first = t_first or now
                t_last = now
    conn.close()
    if usage is None or t_first is None:
        raise SystemExit(f"{url}: no usage or no tokens in the stream")
    return usage["prompt_tokens"], usage["completion_tokens"], t0, t_first, t_last, "".join(text)


def context(n):
    """A ~900-token system message that differs from every other n's from
    its first words on."""
    colors = ["red", "green", "blue", "grey", "golden", "pale"]
    animals = ["fox", "heron", "otter", "badger", "lynx", "crane", "hare"]
    places = ["bridge", "orchard", "quarry", "harbour", "meadow"]
    notes = [
        f"Note {i}: the {colors[(i + n) % 6]} {animals[(i * 3 + n) % 7]} crossed the "
        f"{places[(i + 2 * n) % 5]} at {(i * 7 + n) % 12 + 1} o'clock."
        for i in range(48)
    ]
    return (
        f"Session {n:04d}. You are the keeper of a field journal. These are its notes:\n"
        + "\n".join(notes)
        + "\nAnswer questions about the journal in one short sentence."
    )


def cache_ttft(url, n, reuse):
    """TTFT in seconds of the second turn of conversation n, and its prompt tokens."""
    extra = {"cache_prompt": reuse}
    messages = [
        {"role": "system", "content": context(n)},
        {"role": "user", "content": "Which animal crossed the bridge first?"},
    ]
    answer = stream_messages(url, messages, 16, extra)[5]
    messages += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And which one crossed the harbour last?"},
    ]
    pt, _, t0, tf, _, _ = stream_messages(url, messages, 8, extra)
    return tf - t0, pt


def cache_main(a):
    modes = a.cache.split(",")
    for mode in modes:
        if mode not in ("reuse", "noreuse"):
            raise SystemExit(f"--cache {mode!r}: expected reuse or noreuse")
    out, prompts = [], []
    for m, mode in enumerate(modes):
        ttfts = []
        for r in range(a.rounds):
            ttft, pt = cache_ttft(a.url, 100 * (m + 1) + r, mode == "reuse")
            ttfts.append(ttft)
            prompts.append(pt)
        out.append(f"ttft_ms_{mode}={statistics.median(ttfts) * 1000:.1f}")
    print(" ".join(out), f"prompt_tokens={statistics.median(prompts):.0f}")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--extra-body", default="{}", help="JSON fields added to every request")
    p.add_argument("--cache", help="measure the prompt cache instead: reuse, noreuse or both")
    a = p.parse_args()
    EXTRA.update(json.loads(a.extra_body))
    if a.cache:
        cache_main(a)
        return

    n = 0
    stream_chat(a.url, 9999, 16)  # warm-up
    decode, prefill = [], []
    for _ in range(a.rounds):
        n += 1
        pt, ct, t0, tf, tl = stream_chat(a.url, n, a.tokens)
        prefill.append(pt / (tf - t0))
        decode.append((ct - 1) / (tl - tf))

    aggs = []
    for _ in range(max(1, a.rounds // 2)):
        results = []
        lock = threading.Lock()

        def client(i):
            r = stream_chat(a.url, 1000 + n * 10 + i, a.tokens)
            with lock:
                results.append(r)

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        n += 1
        aggs.append(sum(r[1] for r in results) / wall)

    print(
        f"{a.name} decode_tok_s={statistics.median(decode):.1f} "
        f"prefill_tok_s={statistics.median(prefill):.1f} "
        f"agg4_tok_s={statistics.median(aggs):.1f} rss_mb={rss_mb(a.pid):.0f}"
    )


if __name__ == "__main__":
    main()
