"""`bouquet health` against a local swarm: one `bouquet dht` and three `bouquet serve` of a tiny
model (blocks 0:2, 2:4, 4:6, announcing every second). GET /api/v1/state shows the model covered
with each server's record and a measured RTT; the server of 2:4 is killed and its blocks show the
gap once its records expire; a new server of 2:4 fills it. GET / is the page, self-contained.

When Debian's `chromium` is installed, a headless browser also loads the page at each stage and
the test reads the rendered DOM (the block strip's colours); screenshots go to ARTIFACT_DIR.

Usage: health_test.py BOUQUET_BINARY [ARTIFACT_DIR]  (seed: $BOUQUET_SEED, printed; it seeds the model)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import Harness

BOUQUET = sys.argv[1]
ARTIFACTS = sys.argv[2] if len(sys.argv) > 2 else None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SEED = int(os.environ.get("BOUQUET_SEED", "23"))
print(f"seed {SEED} (reproduce: BOUQUET_SEED={SEED} python3 {' '.join(sys.argv)})", flush=True)
scratch = tempfile.mkdtemp(prefix="bouquet-health-test.")
H = Harness(BOUQUET, scratch)
check = H.check


def start(args, log_name):
    """Starts `bouquet ARGS`; returns (process, the address of its 'listening on' line)."""
    p, found = H.start(args, log_name)
    return p, found["address"]


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def wait_state(url, predicate, timeout_s):
    deadline = time.time() + timeout_s
    state = None
    while time.time() < deadline:
        state = json.loads(get(url + "/api/v1/state")[1])
        if predicate(state):
            return state
        time.sleep(0.25)
    print(f"last state: {json.dumps(state)}", flush=True)
    return None


def coverage(state):
    m = [m for m in state["models"] if m["name"] == "tiny"]
    return [b["coverage"] for b in m[0]["blocks"]] if m else []


def browser(url, stage):
    """The page as headless Chromium rendered it after its script ran (None without Chromium)."""
    if not CHROMIUM:
        return None
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
              f"--user-data-dir={os.path.join(scratch, 'chromium-' + stage)}"]
    dom = subprocess.run(common + ["--dump-dom", url + "/"], capture_output=True, text=True, timeout=120).stdout
    if ARTIFACTS:
        shot = os.path.join(ARTIFACTS, f"health-{stage}.png")
        subprocess.run(common + ["--window-size=1200,700", f"--screenshot={shot}", url + "/"], capture_output=True,
                       timeout=120)
        print(f"screenshot: {shot}", flush=True)
    return dom


def rendered_coverage(dom):
    return re.findall(r'data-coverage="(\w+)"', dom)


def serve(model, dht, span):
    return start(["serve", "--model", model, "--blocks", span, "--listen", "127.0.0.1:0", "--initial-peers", dht,
                  "--update-period", "1", "--dht-listen", "127.0.0.1:0"], f"serve-{span.replace(':', '-')}.log")


def main():
    model = os.path.join(scratch, "tiny")
    subprocess.run([BOUQUET, "make-tiny-model", "--out", model, "--layers", "6", "--seed", str(SEED % 1000)],
                   check=True, capture_output=True)
    _, dht = start(["dht", "--listen", "127.0.0.1:0"], "dht.log")
    servers = {span: serve(model, dht, span) for span in ("0:2", "2:4", "4:6")}
    _, url = start(["health", "--initial-peers", dht, "--listen", "127.0.0.1:0", "--refresh", "0.5",
                    "--dht-listen", "127.0.0.1:0"], "health.log")

    state = wait_state(url, lambda s: coverage(s) == ["thin"] * 6, 60)
    check(state is not None, "the state shows the model's 6 blocks each held by one server")
    if state:
        m = [m for m in state["models"] if m["name"] == "tiny"][0]
        check(m["covered"] and m["model_blocks"] == 6, "the model is covered, 6 blocks")
        by_address = {s["address"]: s for s in m["servers"]}
        check(sorted(by_address) == sorted(a for _, a in servers.values()), "every server is listed once, by address")
        for span, (_, address) in servers.items():
            s = by_address.get(address, {})
            a, b = (int(x) for x in span.split(":"))
            check(s.get("span") == [a, b] and s.get("state") == "online", f"{address} serves {span}, online")
            check(isinstance(s.get("rtt_ms"), (int, float)) and s["rtt_ms"] >= 0, f"{address} has a measured RTT")
            check(s.get("version", "").startswith("bouquet") and s.get("cache_tokens_free", 0) > 0,
                  f"{address} shows its version and free cache")

    dom = browser(url, "covered")
    if dom is None:
        print("skipped: the browser checks (no chromium installed)", flush=True)
    else:
        check(rendered_coverage(dom) == ["thin"] * 6 and 'data-covered="true"' in dom,
              "in Chromium the page draws 6 covered blocks")

    kind, page = get(url + "/")
    check(kind.startswith("text/html") and "/api/v1/state" in page, "GET / is the page that reads /api/v1/state")
    check(not re.search(r"<(script|link)[^>]+(src|href)=", page), "the page loads nothing from elsewhere (no CDN)")

    killed, _ = servers.pop("2:4")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    state = wait_state(url, lambda s: coverage(s) == ["thin", "thin", "none", "none", "thin", "thin"], 30)
    check(state is not None, "after killing the server of 2:4, blocks 2 and 3 show the gap")
    if state:
        m = [m for m in state["models"] if m["name"] == "tiny"][0]
        check(not m["covered"] and len(m["servers"]) == 2, "the model is not covered; the dead server is gone")

    dom = browser(url, "gap")
    if dom is not None:
        check(rendered_coverage(dom) == ["thin", "thin", "none", "none", "thin", "thin"] and 'data-covered="false"' in dom,
              "in Chromium the strip shows blocks 2 and 3 uncovered")

    servers["2:4"] = serve(model, dht, "2:4")
    check(wait_state(url, lambda s: coverage(s) == ["thin"] * 6, 30) is not None, "a new server of 2:4 fills the gap")
    dom = browser(url, "refilled")
    if dom is not None:
        check(rendered_coverage(dom) == ["thin"] * 6, "in Chromium the gap is filled again")


H.run(main)
