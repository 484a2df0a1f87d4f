"""`bouquet api` driven by real clients: the official `openai` package and `curl`.

A local swarm (one `bouquet dht`, two `bouquet serve` of a tiny model, announcing every 2 s)
and `bouquet api --initial-peers ... --api-key ...` in front of it. Checks what a user of an
OpenAI client notices: the model list, completions and chat (greedy output equal to
`bouquet generate --local`), streaming equal to the whole answer, seeds, stop texts, usage, the
error statuses and bodies (401, 400 bad JSON, 404 unknown model, 400 too many tokens, 503 swarm
gone), SSE framing as curl sees it, 16 concurrent streams, the API's memory back near its
baseline, and a client that hangs up mid-stream ending its session on the servers.

Usage: api_openai_test.py BOUQUET_BINARY SCRATCH_DIR  (seed: $BOUQUET_SEED, printed)
"""

import concurrent.futures
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import Harness

import openai

BOUQUET = sys.argv[1]
SCRATCH = sys.argv[2]
SEED = int(os.environ.get("BOUQUET_SEED", "23"))
KEY = "sekrit-test-key"
print(f"seed {SEED} (reproduce: BOUQUET_SEED={SEED} {sys.executable} {' '.join(sys.argv)})", flush=True)
rng = random.Random(SEED)

H = Harness(BOUQUET, SCRATCH)
check = H.check


def start(args, log_name):
    """Starts `bouquet ARGS`; returns (process, the address of its 'listening on' line)."""
    p, found = H.start(args, log_name)
    return p, found["address"]


def run(args):
    r = subprocess.run([BOUQUET] + args, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"bouquet {' '.join(args)}: {r.stderr}")
    return r.stdout


def curl(*args):
    r = subprocess.run(["curl", "-sS", "-N", "--max-time", "60", *args], capture_output=True, timeout=90)
    return r.stdout.decode("utf-8", "replace")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def swarm_cache_free(dht):
    """Free cache tokens per server address, as the servers last announced them."""
    out = json.loads(run(["swarm", "--initial-peers", dht, "--json", "--listen", "127.0.0.1:0"]))
    free = {}
    for model in out["models"]:
        for block in model["blocks"]:
            for s in block["servers"]:
                free[s["address"]] = s["cache_tokens_free"]
    return free


def wait_for(condition, timeout_s, poll_s=0.25):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    return condition()


def main():
    model = os.path.join(SCRATCH, "tiny")
    run(["make-tiny-model", "--out", model, "--layers", "4", "--seed", str(SEED % 1000)])
    _, dht = start(["dht", "--listen", "127.0.0.1:0"], "dht.log")
    servers = []
    for span in ("0:2", "2:4"):
        p, address = start(["serve", "--model", model, "--blocks", span, "--listen", "127.0.0.1:0",
                            "--initial-peers", dht, "--update-period", "2", "--dht-listen", "127.0.0.1:0"],
                           f"serve-{span.replace(':', '-')}.log")
        servers.append((p, address))
    api_log = os.path.join(SCRATCH, "api.log")
    api, url = start(["api", "--model", model, "--initial-peers", dht, "--listen", "127.0.0.1:0",
                      "--api-key", KEY, "--dht-listen", "127.0.0.1:0"], "api.log")
    base = url + "/v1"
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=120)
    name = "tiny"

    # Servers announce within a second or two; until then the API answers 503.
    def ready():
        try:
            client.completions.create(model=name, prompt="x", max_tokens=1)
            return True
        except openai.APIStatusError as e:
            return False

    check(wait_for(ready, 60, 0.5), "the API serves once the servers are in the DHT")
    baseline_cache = wait_for(lambda: (lambda f: f if len(f) == 2 else None)(swarm_cache_free(dht)), 30)
    print(f"servers' free cache at rest: {baseline_cache}", flush=True)

    # --- the model list and plain answers
    models = client.models.list()
    check([m.id for m in models.data] == [name], f"models.list() lists '{name}'")
    check(client.models.retrieve(name).id == name, "models.retrieve() finds it")

    prompt = "The quick brown fox"
    local = json.loads(run(["generate", "--model", model, "--local", "--prompt", prompt,
                            "--max-new-tokens", "12", "--json"]))
    c = client.completions.create(model=name, prompt=prompt, max_tokens=12, temperature=0)
    check(c.choices[0].text == local["text"], f"greedy completion equals generate --local ({c.choices[0].text!r})")
    check(c.usage.prompt_tokens == len(local["prompt_ids"]) and c.usage.completion_tokens == len(local["ids"]),
          f"usage counts prompt and completion tokens ({c.usage})")
    check(c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens, "usage total = prompt + completion")
    check(c.choices[0].finish_reason == ("length" if local["stop_reason"] == "max_new_tokens" else "stop"),
          f"finish_reason {c.choices[0].finish_reason}")

    _, local_url = start(["api", "--model", model, "--local", "--listen", "127.0.0.1:0"], "api-local.log")
    local_client = openai.OpenAI(base_url=local_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    in_process = local_client.completions.create(model=name, prompt=prompt, max_tokens=12, temperature=0)
    check(in_process.choices[0].text == local["text"], "api --local (every block in the process) gives the same text")

    chat = client.chat.completions.create(model=name, messages=[{"role": "system", "content": "be brief"},
                                                                {"role": "user", "content": "hello"}],
                                          max_tokens=10, temperature=0)
    chat_local = json.loads(run(["generate", "--model", model, "--local", "--prompt",
                                 "system: be brief\nuser: hello\nassistant:", "--max-new-tokens", "10", "--json"]))
    check(chat.choices[0].message.role == "assistant", "chat answers as the assistant")
    check(chat.choices[0].message.content == chat_local["text"],
          f"chat applies the plain template: {chat.choices[0].message.content!r}")

    # --- streaming equals the whole answer
    pieces = [ch.choices[0].text for ch in client.completions.create(model=name, prompt=prompt, max_tokens=12,
                                                                      temperature=0, stream=True)]
    check("".join(pieces) == c.choices[0].text and len(pieces) > 1, f"a streamed completion ({len(pieces)} chunks) "
          "joins to the whole one")
    chunks = list(client.chat.completions.create(model=name, messages=[{"role": "system", "content": "be brief"},
                                                                       {"role": "user", "content": "hello"}],
                                                 max_tokens=10, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    check(chunks[0].choices[0].delta.role == "assistant", "a chat stream starts with the assistant role")
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check(text == chat.choices[0].message.content, "a streamed chat joins to the whole answer")
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    check(finals == [chat.choices[0].finish_reason], f"exactly one chunk carries the finish reason ({finals})")
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == chat.usage.completion_tokens,
          "include_usage adds a last chunk with the usage")

    # --- sampling: a seed reproduces, stop texts cut
    seed = rng.randrange(1 << 30)
    sampled = [client.completions.create(model=name, prompt=prompt, max_tokens=16, temperature=1.0, top_p=0.9,
                                         seed=seed, presence_penalty=0.5, frequency_penalty=0.5).choices[0].text
               for _ in range(2)]
    check(sampled[0] == sampled[1], f"seed {seed} reproduces a sampled completion")
    long = client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0).choices[0].text
    stop = long[len(long) // 2: len(long) // 2 + 2]
    if stop.strip():
        cut = client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0, stop=[stop])
        check(cut.choices[0].text == long[:long.find(stop)] and cut.choices[0].finish_reason == "stop",
              f"stop {stop!r} ends the text before it")
        streamed = "".join(ch.choices[0].text for ch in client.completions.create(
            model=name, prompt=prompt, max_tokens=24, temperature=0, stop=[stop], stream=True))
        check(streamed == cut.choices[0].text, "a streamed stop text is never shown")

    # --- errors, as the client library raises them
    def error_of(call):
        try:
            call()
        except openai.APIStatusError as e:
            return e
        return None

    bad_key = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
    e = error_of(lambda: bad_key.models.list())
    check(isinstance(e, openai.AuthenticationError) and e.status_code == 401, "a wrong API key gets 401")
    e = error_of(lambda: client.completions.create(model="no-such-model", prompt="x", max_tokens=1))
    check(isinstance(e, openai.NotFoundError) and e.body.get("code") == "model_not_found", f"an unknown model gets 404 ({e})")
    e = error_of(lambda: client.completions.create(model=name, prompt=prompt, max_tokens=100000))
    check(isinstance(e, openai.BadRequestError) and e.body.get("code") == "context_length_exceeded",
          f"too many tokens gets 400 context_length_exceeded ({e})")
    e = error_of(lambda: client.completions.create(model=name, prompt=prompt, max_tokens=4, temperature=7))
    check(isinstance(e, openai.BadRequestError) and e.body.get("param") == "temperature", "a bad temperature gets 400 naming it")

    # --- curl: raw bodies and SSE framing
    auth = ["-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json"]
    out = curl(*auth, "-w", "\n%{http_code}", "-d", '{"model": "tiny", "prompt": ', base + "/completions")
    body, status = out.rsplit("\n", 1)
    check(status == "400" and "could not parse the JSON body" in json.loads(body)["error"]["message"],
          f"bad JSON gets 400 with OpenAI's error body ({status} {body[:80]})")
    out = curl("-w", "\n%{http_code}", base + "/models")
    check(out.endswith("\n401") and json.loads(out.rsplit("\n", 1)[0])["error"]["code"] == "invalid_api_key",
          "no API key gets 401 invalid_api_key")
    out = curl(*auth, "-w", "\n%{http_code}", url + "/v2/nothing")
    check(out.endswith("\n404"), "an unknown URL gets 404")
    headers = os.path.join(SCRATCH, "sse-headers.txt")
    raw = curl(*auth, "-D", headers, "-d", json.dumps({"model": name, "prompt": prompt, "max_tokens": 6,
                                                        "temperature": 0, "stream": True}), base + "/completions")
    with open(headers) as f:
        head = f.read().lower()
    check("content-type: text/event-stream" in head, "a stream is text/event-stream")
    events = raw.split("\n\n")
    check(raw.endswith("data: [DONE]\n\n") and events[-1] == "" and events[-2] == "data: [DONE]",
          "the stream ends with data: [DONE] and a blank line")
    payloads = events[:-2]
    check(all(e.startswith("data: ") and "\n" not in e for e in payloads), "every event is one data line")
    parsed = [json.loads(e[len("data: "):]) for e in payloads]
    curl_text = "".join(p["choices"][0]["text"] for p in parsed)
    check(curl_text and c.choices[0].text.startswith(curl_text), f"curl's events carry the greedy text ({curl_text!r})")
    check(parsed[-1]["choices"][0]["finish_reason"] in ("length", "stop"), "the last event has the finish reason")

    # --- 16 concurrent streams, and memory afterwards
    def stream_one(i):
        got = list(client.chat.completions.create(model=name, messages=[{"role": "user", "content": f"story {i}"}],
                                                  max_tokens=40, temperature=0.8, seed=i, stream=True))
        return [ch.choices[0].finish_reason for ch in got if ch.choices and ch.choices[0].finish_reason]

    def wave():
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return list(pool.map(stream_one, range(16)))

    wave()  # warm: threads, allocator arenas, connections
    rss_before = rss_kib(api.pid)
    results = []
    for _ in range(3):
        results += wave()
    rss_after = rss_kib(api.pid)
    check(len(results) == 48 and all(r in (["length"], ["stop"]) for r in results),
          "48 concurrent streaming requests (3 waves of 16) all complete with a finish reason")
    print(f"api RSS: {rss_before} KiB after a warm-up wave, {rss_after} KiB after 3 more", flush=True)
    check(rss_after <= rss_before * 1.15 + 16 * 1024, "the API's memory is back near its baseline")

    # --- a client that hangs up mid-stream ends its session on the servers
    host = url.replace("http://", "")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server's writes back up soon
    sock.connect((host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1])))
    body = json.dumps({"model": name, "prompt": prompt, "max_tokens": 200, "stream": True, "temperature": 0})
    sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    received = b""
    while received.count(b"data: ") < 2:
        received += sock.recv(1024)
    sock.close()
    went_away = wait_for(lambda: re.search(r"\+(\d+) tokens cancelled: the client went away",
                                           open(api_log).read()), 20)
    check(went_away and int(went_away.group(1)) < 200,
          f"the API stopped generating for the client that hung up ({went_away.group(0) if went_away else 'no log'})")
    freed = wait_for(lambda: swarm_cache_free(dht) == baseline_cache, 20, 0.5)
    check(freed, "every server's cache is free again after the hang-up")

    # --- the swarm gone: 503 with the reason
    for p, _ in servers:
        p.send_signal(signal.SIGKILL)
        p.wait()
    e = error_of(lambda: client.completions.create(model=name, prompt=prompt, max_tokens=4))
    check(e is not None and e.status_code == 503 and e.body.get("code") == "swarm_unavailable",
          f"no servers gets 503 swarm_unavailable ({e})")
    check(api.poll() is None, "the API is still up")


H.run(main)
