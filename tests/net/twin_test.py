"""The twin test: one small swarm, described once here, run through the simulator (`bouquet sim`,
SimGrid driving the core's state machines) and for real (`bouquet dht`, `bouquet serve` and
`bouquet generate` processes on loopback). Speeds are pinned alike in both worlds (`--throughput` /
`--inference-rps` and the scenario's `throughput_rps` / `inference_rps`) and every round trip is
short and equal, so both worlds hand the core the same inputs. The core must then decide alike:

- the span each server chooses on joining (servers join one after another),
- the chain the client opens (min-latency routing over the announced records),
- after the server of the first span dies mid-generation, the blocks the client re-plans and the
  servers that take them over.

The real swarm uses a random-weight model made by `make-tiny-model` with the block count of the
simulated model's shape (Llama-2-7B: 32 blocks); the simulated shape's size plays no part in these
decisions (spans are sized by --num-blocks, speeds are pinned).

Usage: twin_test.py BOUQUET_BINARY  (seed: $BOUQUET_SEED, printed; it seeds the model and the sampling)
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from harness import Harness

BOUQUET = sys.argv[1]
SEED = int(os.environ.get("BOUQUET_SEED", "31"))
print(f"seed {SEED} (reproduce: BOUQUET_SEED={SEED} python3 {' '.join(sys.argv)})", flush=True)
scratch = tempfile.mkdtemp(prefix="bouquet-twin-test.")
H = Harness(BOUQUET, scratch)
check = H.check

BLOCKS = 32  # llama-2-7b's shape in the simulator
# The swarm: joining in this order, each once the previous one serves. `dies` serves that many
# inference steps, then its process dies (SIGKILL); in the simulator its host goes off during the
# generation.
SERVERS = [
    {"name": "s1", "num_blocks": 16, "rps": 10},
    {"name": "s2", "num_blocks": 16, "rps": 20},
    {"name": "s3", "num_blocks": 16, "rps": 30, "dies": 20},
    {"name": "s4", "num_blocks": 8, "rps": 40},
]
JOIN_GAP_S = 15  # simulated seconds between joins (real: each joins once the previous one serves)
CLIENT_START_S = JOIN_GAP_S * len(SERVERS) + 5
NEW_TOKENS = 64


def scenario_yaml():
    servers = []
    for i, s in enumerate(SERVERS):
        line = (f"  - {{name: {s['name']}, gpu: a100-80gb, region: lab, blocks: auto, num_blocks: {s['num_blocks']}, "
                f"throughput_rps: {s['rps']}, inference_rps: {s['rps']}, join_s: {i * JOIN_GAP_S}")
        if "dies" in s:
            # Mid-generation: the client opens its session a few directory round trips after it starts.
            line += f", lifetime_s: {CLIENT_START_S + 2}"
        servers.append(line + "}")
    return "\n".join([
        "version: 1",
        "name: twin",
        "description: the twin test's swarm (tests/net/twin_test.py writes this file)",
        "seed: 1",
        "duration_s: 3600",
        "network:",
        "  model: CM02",
        "  crosstraffic: false",
        "  tcp_window_bytes: 4194304",
        "  why: loopback in the real run; every link short and fast",
        "model: {name: llama-2-7b, weights: f16, activations: float32, wire_compression: none}",
        "cost: {efficiency: {f16: 0.5}, block_overhead_s: 0.0001, request_overhead_s: 0.0001, client_efficiency: 0.7}",
        "regions:",
        "  - {name: lab, up_bps: 1e10, down_bps: 1e10, latency_s: 0.00005}",
        "servers:",
        *servers,
        "clients:",
        f"  - name: client",
        f"    device: cpu-32core",
        f"    region: lab",
        f"    start_s: {CLIENT_START_S}",
        # Long enough that the server dies while it runs.
        f"    work: {{kind: generate, prefix_tokens: 4, new_tokens: 100000}}",
        "policies: {routing: min_latency, placement: greedy, balancing: none, join_delay_s: 0.5, recovery: replay}",
        "directory: {round_trip_s: 0.01, lookup_round_trips: 2, announce_round_trips: 2, update_period_s: 5}",
        "",
    ])


def simulate():
    path = os.path.join(scratch, "twin.yaml")
    with open(path, "w") as f:
        f.write(scenario_yaml())
    out = os.path.join(scratch, "sim.json")
    run = subprocess.run([BOUQUET, "sim", path, "--out", out], capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"bouquet sim failed: {run.stderr}")
    with open(out) as f:
        doc = json.load(f)
    result = doc["result"] if "result" in doc else doc["rows"][0]["result"]
    spans = {p["server"]: [tuple(s) for s in p["spans"]] for p in result["placement"]}
    routes = result["clients"][0]["routes"]
    return spans, routes


def real(model):
    _, dht = H.start(["dht", "--listen", "127.0.0.1:0"], "dht.log", {"address": r"listening on (\S+)"})
    dht = dht["address"]
    addresses, spans = {}, {}
    for s in SERVERS:
        args = ["serve", "--model", model, "--listen", "127.0.0.1:0", "--dht-listen", "127.0.0.1:0",
                "--initial-peers", dht, "--num-blocks", str(s["num_blocks"]), "--throughput", str(s["rps"]),
                "--inference-rps", str(s["rps"]), "--join-delay", "0.5", "--update-period", "5",
                "--balance-quality", "0", "--threads", "1"]
        if "dies" in s:
            args += ["--crash-after-steps", str(s["dies"])]
        _, found = H.start(args, f"serve-{s['name']}.log",
                         {"address": r"listening on (\S+)", "span": r"serving blocks \[(\d+, \d+)\)"})
        addresses[found["address"]] = s["name"]
        spans[s["name"]] = [tuple(int(x) for x in found["span"].split(", "))]
        # The next server joins once this one's record is online in the DHT, as in the simulator
        # (on a busy machine the put can take seconds).
        H.wait_online(dht, found["address"])
    run = subprocess.run([BOUQUET, "generate", "--model", model, "--initial-peers", dht, "--prompt", "twin",
                          "--max-new-tokens", str(NEW_TOKENS), "--seed", str(SEED), "--json"],
                         capture_output=True, text=True, timeout=300)
    with open(os.path.join(scratch, "generate.log"), "w") as f:
        f.write(run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"bouquet generate failed: {run.stderr[-2000:]}")
    out = json.loads(run.stdout)

    def named(hops):
        return [{"server": addresses.get(h["peer"], h["peer"]), "blocks": h["blocks"]} for h in hops]

    routes = [{"kind": "opened", "hops": named(out["route"])}]
    for r in out["recoveries"]:
        routes.append({"kind": "recovered", "blocks": r["blocks"], "failed_server": addresses.get(r["failed_peer"]),
                       "hops": named(r["replacement"])})
    return spans, routes, out


def main():
    model = os.path.join(scratch, "tiny")
    subprocess.run([BOUQUET, "make-tiny-model", "--out", model, "--layers", str(BLOCKS), "--seed", str(SEED % 1000)],
                   check=True, capture_output=True)
    sim_spans, sim_routes = simulate()
    print(f"simulated: spans {sim_spans}\n           routes {json.dumps(sim_routes)}", flush=True)
    real_spans, real_routes, out = real(model)
    print(f"real:      spans {real_spans}\n           routes {json.dumps(real_routes)}", flush=True)

    for s in SERVERS:
        name = s["name"]
        check(sim_spans.get(name) == real_spans.get(name),
              f"{name} chose the same span in both worlds ({sim_spans.get(name)} / {real_spans.get(name)})")
    check(len(set(sim_spans[s["name"]][0] for s in SERVERS)) >= 3, "the servers did not all pile onto one span")
    check(sim_routes[:1] == real_routes[:1], "the client opened the same chain in both worlds")
    dying = [s["name"] for s in SERVERS if "dies" in s][0]
    check(any(h["server"] == dying for h in real_routes[0]["hops"]), f"the chain went through {dying}, which dies")
    sim_rec = [r for r in sim_routes if r["kind"] == "recovered"]
    real_rec = [r for r in real_routes if r["kind"] == "recovered"]
    check(len(real_rec) >= 1 and len(sim_rec) >= 1, "the death of a server cost a recovery in both worlds")
    check(sim_rec[:1] == real_rec[:1], "the same blocks were re-planned onto the same servers in both worlds")
    local = subprocess.run([BOUQUET, "generate", "--model", model, "--local", "--prompt", "twin", "--max-new-tokens",
                            str(NEW_TOKENS), "--seed", str(SEED), "--json"], capture_output=True, text=True, timeout=300)
    check(local.returncode == 0 and json.loads(local.stdout)["ids"] == out["ids"],
          f"the real generation, recovery and all, gave the ids of generate --local ({len(out['ids'])} tokens)")


H.run(main)
