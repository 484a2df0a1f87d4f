"""Sim and real side by side: runs each row of a fidelity scenario (scenarios/fidelity-*.yaml) twice,
for real (a `bouquet dht` node, `bouquet serve` processes, `bouquet generate` clients, every client
connection to a server through a `bouquet link` with the row's delay and bandwidth) and in
`bouquet sim` with this machine's device profile, then prints per row the real and simulated
figure, their ratio and whether the core decided alike (spans chosen, route opened, recoveries);
writes OUT/SCENARIO.fidelity.json (and the simulator's
OUT/SCENARIO.sim.json); OUT keeps the model and the device file for the next run.

What travels from the scenario to the real run: the model's shape (make-tiny-model's flags), each
server's span (pinned, or `auto` with num_blocks), pinned speeds, join order, the one-way delay
between a client and a server (the two hosts' latency_s) and the bandwidth (the smaller of the
client's up and the server's down link), the clients' count and work, the policies. The DHT's own
traffic (UDP) does not cross the links: the measured figure starts once the session is open.

Usage: fidelity.py SCENARIO [--out DIR] [--bouquet PATH] [--rows A,B] [--tolerance X] [--seed S]
  (seed: --seed, else $BOUQUET_SEED, else the scenario's; printed with the command that reproduces
  the run; it seeds the model's weights, the simulation and the clients' sampling)
  --tolerance X: each row's real / simulated must be within 1 +- X and its decisions equal (a
  failed check makes the exit status 1); without it the table is a report and only a run that
  could not be made fails.
"""

import argparse
import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "net"))
from harness import Harness  # noqa: E402

DEVICE_FILE = "this-machine.json"  # what the fidelity scenarios' device_file keys name
FINETUNE_PREFIX = 8  # trainable prefix positions of a fine-tuning row's clients (finetune --pre-seq-len)


def set_path(node, path, value):
    """Applies one `set` entry (dotted keys, list indices, `*` for every element) as the simulator's
    loader does."""
    parts = path.split(".")
    targets = [node]
    for part in parts[:-1]:
        nxt = []
        for t in targets:
            if part == "*":
                nxt.extend(t)
            elif isinstance(t, list):
                nxt.append(t[int(part)])
            else:
                nxt.append(t.setdefault(part, {}))
        targets = nxt
    last = parts[-1]
    for t in targets:
        if last == "*":
            for i in range(len(t)):
                t[i] = copy.deepcopy(value)
        elif isinstance(t, list):
            t[int(last)] = copy.deepcopy(value)
        else:
            t[last] = copy.deepcopy(value)


def instance_names(entry):
    count = int(entry.get("count", 1))
    return [entry["name"]] if count == 1 else [f"{entry['name']}-{i}" for i in range(count)]


def host_link(scenario, entry):
    """(latency_s one way to the region's core, up_bps, down_bps) of a server or client entry."""
    region = next(r for r in scenario["regions"] if r["name"] == entry["region"])
    return (float(entry.get("latency_s", region["latency_s"])), float(entry.get("up_bps", region["up_bps"])),
            float(entry.get("down_bps", region["down_bps"])))


def wire_compression(scenario):
    """The clients' --compression for the scenario's model.wire_compression."""
    return {"none": "none", "float16": "f16", "int8_blockwise": "int8"}[scenario["model"].get("wire_compression", "none")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fidelity:
    def __init__(self, args):
        self.args = args
        self.bouquet = args.bouquet
        self.out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="bouquet-fidelity."))
        os.makedirs(self.out, exist_ok=True)
        self.H = Harness(self.bouquet, self.out)
        with open(args.scenario) as f:
            self.text = f.read()
        self.base = yaml.safe_load(self.text)
        self.stem = os.path.splitext(os.path.basename(args.scenario))[0]
        self.finetune_sets = {}  # batch -> (data file, positions per sequence): written and measured once
        if "shape" not in self.base.get("model", {}):
            raise SystemExit(f"fidelity: {args.scenario}: model has no shape: the real run needs one make-tiny-model "
                             "can make (model.shape)")
        if args.seed is not None:
            self.seed = args.seed
        else:
            self.seed = int(os.environ.get("BOUQUET_SEED", self.base["seed"]))

    def bq(self, *argv, timeout=600):
        run = subprocess.run([self.bouquet, *argv], capture_output=True, text=True, timeout=timeout)
        if run.returncode != 0:
            raise RuntimeError(f"bouquet {' '.join(argv)} failed: {run.stderr.strip()[-2000:]}")
        return run.stdout

    # --- set-up: the model and this machine's device file -----------------------------------------

    def make_model(self):
        shape = self.base["model"]["shape"]
        self.model = os.path.join(self.out, "model")
        if not os.path.exists(os.path.join(self.model, "config.json")):
            self.bq("make-tiny-model", "--out", self.model, "--family", shape["family"], "--layers",
                    str(shape["blocks"]), "--hidden", str(shape["hidden"]), "--heads", str(shape["heads"]),
                    "--kv-heads", str(shape.get("kv_heads", shape["heads"])), "--intermediate",
                    str(shape.get("intermediate", 4 * shape["hidden"])), "--vocab", str(shape["vocab"]),
                    "--dtype", self.base["model"]["weights"], "--seed", str(self.seed % 1000))

    def profile_device(self, folder):
        """Measures this machine into FOLDER/this-machine.json (kept when --profile once found one):
        --profile-repeats runs of profile-device, each figure their median, so that one burst of
        another process's work during one run does not become the device's speed (its overheads are
        least-squares intercepts, the figures noise moves most)."""
        path = os.path.join(folder, DEVICE_FILE)
        if self.args.profile == "once" and os.path.exists(path):
            return
        # make-tiny-model's models hold 256 positions: a step attends to at most 255 cached ones.
        longest = max(int(c["work"].get("prefix_tokens", 1)) + int(c["work"].get("new_tokens", 1))
                      for c in self.base["clients"])
        runs = []
        for i in range(self.args.profile_repeats):
            one = os.path.join(folder, f"profile-{i}.json")
            self.bq("profile-device", "--model", self.model, "--out", one, "--formats", "f32", "--threads", "1",
                    "--batches", "1,4", "--cache-tokens", f"0,64,{min(255, max(192, longest))}", "--prefill-tokens",
                    "16,64")
            with open(one) as f:
                runs.append(json.load(f))
        device = copy.deepcopy(runs[0])

        def median(values):
            return sorted(values)[len(values) // 2]

        for key in ("read_bandwidth_bytes_per_s", "request_overhead_s", "block_overhead_s"):
            device[key] = median([r[key] for r in runs])
        for kind in ("decode", "prefill", "backward"):
            for i, point in enumerate(device["formats"]["f32"].get(kind, [])):
                point["step_s"] = median([r["formats"]["f32"][kind][i]["step_s"] for r in runs])
        device["profile_runs"] = len(runs)
        with open(path, "w") as f:
            json.dump(device, f, indent=2)

    # --- the simulated run ---------------------------------------------------------------------

    def simulate(self, folder):
        """Runs every row of the scenario in `bouquet sim` with FOLDER's device file; {row: its JSON}."""
        path = os.path.join(folder, os.path.basename(self.args.scenario))
        with open(path, "w") as f:
            f.write(self.text)  # beside the device file its device_file keys name
        # ... and beside the implementation profiles it names (copied afresh: the committed ones).
        shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(self.args.scenario)), "profiles"),
                        os.path.join(folder, "profiles"), dirs_exist_ok=True)
        out = os.path.join(folder, f"{self.stem}.sim.json")
        self.bq("sim", path, "--out", out, "--seed", str(self.seed), *[f"--set={a}" for a in self.args.set])
        with open(out) as f:
            return {r["name"]: r for r in json.load(f)["rows"]}

    # --- the real run of one row -----------------------------------------------------------------

    def real(self, row_name, scenario):
        H = self.H
        logs = os.path.join(self.out, row_name)
        os.makedirs(logs, exist_ok=True)
        H.scratch = logs
        try:
            return self._real(scenario)
        finally:
            H.stop_all()

    def _real(self, s):
        H = self.H
        policies = s.get("policies", {})
        directory = s.get("directory", {})
        clients = [(name, c) for c in s["clients"] for name in instance_names(c)]
        client_links = {host_link(s, c) for _, c in clients}
        if len(client_links) != 1:
            raise RuntimeError("every client must sit on the same kind of link (one bouquet link per server)")
        client_latency_s, client_up_bps, client_down_bps = client_links.pop()

        _, dht = H.start(["dht", "--listen", "127.0.0.1:0"], "dht.log")
        dht = dht["address"]
        names, spans = {}, {}
        servers = sorted(((name, e) for e in s["servers"] for name in instance_names(e)),
                         key=lambda ne: float(ne[1].get("join_s", 0)))
        for name, e in servers:
            latency_s, up_bps, down_bps = host_link(s, e)
            delay_ms = (client_latency_s + latency_s) * 1e3
            bandwidth_bps = min(client_up_bps, down_bps, up_bps, client_down_bps)
            port = free_port()
            _, link = H.start(["link", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{port}", "--delay-ms",
                               f"{delay_ms:g}", "--bandwidth-bps", f"{bandwidth_bps:g}"], f"link-{name}.log")
            args = ["serve", "--model", self.model, "--listen", f"127.0.0.1:{port}", "--announce-addr",
                    link["address"], "--dht-listen", "127.0.0.1:0", "--initial-peers", dht, "--threads", "1",
                    "--max-batch", str(e.get("max_batch", policies.get("max_batch", 1))),
                    "--join-delay", str(policies.get("join_delay_s", 5)),
                    "--update-period", str(directory.get("update_period_s", 60))]
            chunk = int(e.get("prefill_chunk", -2))
            chunk = chunk if chunk >= -1 else int(policies.get("prefill_chunk", -1))
            if chunk >= 0:  # else the server's default, as in the simulator
                args += ["--prefill-chunk", str(chunk)]
            if policies.get("balancing", "none") == "none":
                args += ["--balance-quality", "0"]
            blocks = e.get("blocks", "auto")
            if blocks == "auto":
                args += ["--num-blocks", str(e["num_blocks"])]
            else:
                args += ["--blocks", f"{blocks[0]}:{blocks[1]}"]
            if float(e.get("throughput_rps", 0)) > 0:
                args += ["--throughput", str(e["throughput_rps"])]
            if int(e.get("crash_after_steps", 0)) > 0:
                args += ["--crash-after-steps", str(e["crash_after_steps"])]
            if float(e.get("inference_rps", 0)) > 0:
                args += ["--inference-rps", str(e["inference_rps"])]
            # A pinned server names its blocks as it loads them; an automatic one once it has chosen.
            span_line = r"serving blocks \[(\d+, \d+)\)" if blocks == "auto" else r"blocks \[(\d+, \d+)\) of "
            _, found = H.start(args, f"serve-{name}.log", {"address": r"listening on (\S+)", "span": span_line})
            names[link["address"]] = name
            spans[name] = [[int(x) for x in found["span"].split(", ")]]
            # The next server joins once this one's record is online, as in the simulator.
            H.wait_online(dht, link["address"])

        if any(c["work"].get("kind", "generate") == "backward" for _, c in clients):
            return self._real_finetune(s, dht, names, spans, clients)
        procs = []
        for i, (name, c) in enumerate(clients):
            work = c["work"]
            if work.get("kind", "generate") != "generate" or int(work.get("batch", 1)) != 1:
                raise RuntimeError(f"client {name}: only generation of batch 1 and fine-tuning run for real here")
            prompt = ",".join(str(1 + (7 * k + i) % 400) for k in range(int(work.get("prefix_tokens", 1))))
            argv = [self.bouquet, "generate", "--model", self.model, "--initial-peers", dht, "--prompt-ids", prompt,
                    "--max-new-tokens", str(int(work["new_tokens"]) + 1), "--ignore-eos", "--seed",
                    str(self.seed + i), "--json", "--threads", "1", "--compression", wire_compression(s),
                    "--recovery", policies.get("recovery", "replay"), "--routing", policies.get("routing", "min_latency")]
            procs.append((name, argv))
        results = self.run_clients("generate", procs)

        def named(hops):
            return [{"server": names.get(h["peer"], h["peer"]), "blocks": h["blocks"]} for h in hops]

        first = results[clients[0][0]]
        routes = [{"kind": "opened", "hops": named(first["route"])}]
        for r in first["recoveries"]:
            routes.append({"kind": "recovered", "blocks": r["blocks"], "failed_server": names.get(r["failed_peer"]),
                           "hops": named(r["replacement"])})
        rates = [r["tokens_per_s"] for r in results.values()]
        replayed = sum(rec["positions_replayed"] for r in results.values() for rec in r["recoveries"])
        return {"tokens_per_s": sum(rates) / len(rates), "steps_per_s": sum(rates) / len(rates),
                "total_tokens_per_s": sum(rates), "spans": spans, "routes": routes, "positions_replayed": replayed,
                "recoveries": [rec for r in results.values() for rec in r["recoveries"]],
                "first_client_recoveries": first["recoveries"],
                "clients": {n: {k: r[k] for k in ("tokens_per_s", "prefill_s", "decode_s")} for n, r in results.items()}}

    def run_clients(self, command, clients):
        """Starts every (name, argv) at once, each logging to COMMAND-NAME.log; {name: its JSON}."""
        procs = []
        for name, argv in clients:
            err = open(os.path.join(self.H.scratch, f"{command}-{name}.log"), "w")
            procs.append((name, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True), err))
        results = {}
        for name, p, err in procs:
            stdout, _ = p.communicate(timeout=600)
            err.close()
            if p.returncode != 0:
                raise RuntimeError(f"bouquet {command} ({name}) failed; see {err.name}")
            results[name] = json.loads(stdout)
        return results

    # --- fine-tuning rows ------------------------------------------------------------------------

    def finetune_data(self, work):
        """OUT/finetune-B.jsonl: `batch` examples of a fixed shape drawn from the seed (a prompt of 6
        words, a completion of 2), so every step trains on the whole set: the sim's passes of batch x
        sequence_tokens. Returns the path and the positions per sequence the blocks see (the
        prefix included), measured by one local step; once per batch size and run."""
        batch = int(work.get("batch", 1))
        if batch in self.finetune_sets:
            return self.finetune_sets[batch]
        path = os.path.join(self.out, f"finetune-{batch}.jsonl")
        words = ["red", "blue", "green", "cat", "dog", "bird", "sun", "moon", "tree", "river", "stone", "cloud"]
        with open(path, "w") as f:
            for i in range(batch):
                pick = [words[(self.seed + 5 * i + 3 * k * k) % len(words)] for k in range(8)]
                f.write(json.dumps({"prompt": " ".join(pick[:6]), "completion": " " + " ".join(pick[6:])}) + "\n")
        report = json.loads(self.bq("finetune", "--model", self.model, "--local", "--data", path, "--steps", "1",
                                    "--pre-seq-len", str(FINETUNE_PREFIX), "--threads", "1", "--quiet", "--json"))
        self.finetune_sets[batch] = (path, report["step_positions"][0])
        return self.finetune_sets[batch]

    def check_finetune_rows(self, rows):
        """Each fine-tuning row's sequence_tokens must be what its data gives: the simulated passes
        are then the real ones."""
        for row in rows:
            scenario = copy.deepcopy(self.base)
            for key, value in (row.get("set") or {}).items():
                set_path(scenario, key, value)
            for c in scenario["clients"]:
                if c["work"].get("kind") != "backward":
                    continue
                _, positions = self.finetune_data(c["work"])
                if int(c["work"].get("sequence_tokens", 128)) != positions:
                    raise RuntimeError(f"row {row['name']}: client {c['name']} has sequence_tokens "
                                       f"{c['work'].get('sequence_tokens', 128)}, but its data gives {positions} "
                                       f"positions per sequence ({FINETUNE_PREFIX} of them the prefix): set it")

    def _real_finetune(self, s, dht, names, spans, clients):
        """Fine-tuning clients: `bouquet finetune --json` through the swarm, `repeat` steps of the
        whole data set each (prompt tuning, ptune); steps_per_s counts the steps only (forward
        pass, loss, backward pass, update), not the evaluations before and after."""
        procs = []
        for i, (name, c) in enumerate(clients):
            work = c["work"]
            if work.get("kind") != "backward" or int(work.get("repeat", 0)) < 1:
                raise RuntimeError(f"client {name}: a fine-tuning row's clients all fine-tune a set number of "
                                   "steps (kind backward, repeat >= 1)")
            data, _ = self.finetune_data(work)
            argv = [self.bouquet, "finetune", "--model", self.model, "--initial-peers", dht, "--data", data,
                    "--steps", str(int(work["repeat"])), "--pre-seq-len", str(FINETUNE_PREFIX), "--threads", "1",
                    "--seed", str(self.seed + i), "--quiet", "--json", "--compression", wire_compression(s)]
            procs.append((name, argv))
        results = self.run_clients("finetune", procs)
        first = results[clients[0][0]]
        # "ADDRESS [b, e) -> ADDRESS [b, e)": the first chain the passes took.
        hops = []
        for part in first["route"].split(";")[0].split(" -> "):
            address, span = part.strip().split(" ", 1)
            begin, end = (int(x) for x in span.strip("[)").split(", "))
            hops.append({"server": names.get(address, address), "blocks": [begin, end]})
        rates = [len(r["step_s"]) / sum(r["step_s"]) for r in results.values()]
        return {"steps_per_s": sum(rates) / len(rates), "tokens_per_s": float("nan"), "spans": spans,
                "routes": [{"kind": "opened", "hops": hops}], "positions_replayed": 0, "recoveries": [],
                "first_client_recoveries": [],
                "clients": {n: {k: r[k] for k in ("step_s", "step_positions", "step_batch", "retries")}
                            for n, r in results.items()}}

    # --- the comparison --------------------------------------------------------------------------

    def run(self):
        rows = self.base["rows"]
        if self.args.rows:
            wanted = self.args.rows.split(",")
            unknown = sorted(set(wanted) - {r["name"] for r in rows})
            if unknown:
                raise RuntimeError(f"no row named {', '.join(unknown)} in {self.args.scenario}")
            rows = [r for r in rows if r["name"] in wanted]
        print(f"seed {self.seed} (reproduce: {' '.join(sys.argv)} --seed {self.seed}); output in {self.out}", flush=True)
        fit_row = self.args.fit_hop_overhead
        if fit_row:
            if fit_row not in {r["name"] for r in self.base["rows"]}:
                raise RuntimeError(f"--fit-hop-overhead: no row named {fit_row} in {self.args.scenario}")
            # The calibration row runs first; every other row is a prediction with its fitted value.
            rows = [r for r in self.base["rows"] if r["name"] == fit_row] + [r for r in rows if r["name"] != fit_row]
            self.args.set.append("cost.client.hop_overhead_s=0")
        self.make_model()
        self.check_finetune_rows(rows)
        if self.args.profile == "once":
            self.profile_device(self.out)
        simulated = None
        report = {"scenario": self.base["name"], "seed": self.seed, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "cores": os.cpu_count(), "rows": []}
        print(f"{'row':<40} {'metric':<14} {'real':>8} {'sim':>8} {'ratio':>6} {'load':>5}  decisions", flush=True)
        for row in rows:
            scenario = copy.deepcopy(self.base)
            for key, value in (row.get("set") or {}).items():
                set_path(scenario, key, value)
            folder = os.path.join(self.out, row["name"])
            os.makedirs(folder, exist_ok=True)
            if self.args.profile == "each-row":
                # Measured now, at the load the real run meets: the device's speed is a fact of the
                # moment on a shared machine.
                self.profile_device(folder)
                simulated = self.simulate(folder)
            elif simulated is None:
                simulated = self.simulate(self.out)
            load_before = os.getloadavg()[0]
            real = self.real(row["name"], scenario)
            load = (load_before + os.getloadavg()[0]) / 2
            sim_row = simulated[row["name"]]
            role = "prediction"
            if row["name"] == fit_row:
                # client.hop_overhead_s fitted on this row: the per-hop time that makes the simulated
                # step as long as the real one (each step pays it once per hop of its chain).
                role = "calibration"
                hops = len(sim_row["result"]["clients"][0]["routes"][0]["hops"])
                unfitted = sim_row["simulated"]
                fitted_s = max(0.0, (1 / real[row["metric"]] - 1 / unfitted) / hops)
                self.args.set[-1] = f"cost.client.hop_overhead_s={fitted_s:.6g}"
                print(f"fitted client.hop_overhead_s = {fitted_s * 1e3:.3f} ms on {row['name']} ({hops} hops; "
                      f"unfitted simulated {unfitted:.3f}, real {real[row['metric']]:.3f})", flush=True)
                report["hop_overhead_s"] = {"value": fitted_s, "fitted_on": row["name"]}
                simulated = self.simulate(folder if self.args.profile == "each-row" else self.out)
                sim_row = simulated[row["name"]]
            sim_value = sim_row["simulated"]
            metric = row["metric"]
            # Recovery time (noticed to caught up), summed over the first client's recoveries.
            sim_recovery_s = sim_row["result"]["clients"][0].get("recovery_s", 0.0)
            real_recovery_s = sum(r["duration_s"] for r in real["first_client_recoveries"] if r["succeeded"])
            real_value = real[metric]
            ratio = real_value / sim_value if sim_value else float("nan")
            result = sim_row["result"]
            sim_spans = {p["server"]: p["spans"] for p in result["placement"]}
            sim_routes = result["clients"][0]["routes"]
            sim_replayed = sum(c["positions_replayed"] for c in result["clients"])
            same = {"spans": sim_spans == real["spans"], "route": sim_routes[:1] == real["routes"][:1],
                    "recoveries": sim_routes[1:] == real["routes"][1:],
                    "positions_replayed": sim_replayed == real["positions_replayed"]}
            verdict = "same" if all(same.values()) else "DIFFERENT " + ",".join(k for k, v in same.items() if not v)
            print(f"{row['name']:<40} {metric:<14} {real_value:8.3f} {sim_value:8.3f} {ratio:6.3f} {load:5.2f}  "
                  f"{verdict}{'  (calibration)' if role == 'calibration' else ''}", flush=True)
            if real_recovery_s or sim_recovery_s:
                print(f"  recovery: real {real_recovery_s:.3f} s, simulated {sim_recovery_s:.3f} s, ratio "
                      f"{real_recovery_s / sim_recovery_s if sim_recovery_s else float('nan'):.3f}", flush=True)
            if not all(same.values()):
                print(f"  simulated: spans {sim_spans} routes {json.dumps(sim_routes)}\n"
                      f"  real:      spans {real['spans']} routes {json.dumps(real['routes'])}", flush=True)
            with open(os.path.join(folder if self.args.profile == "each-row" else self.out, DEVICE_FILE)) as f:
                device = json.load(f)
            report["rows"].append({"name": row["name"], "metric": metric, "real": real_value, "simulated": sim_value,
                                   "ratio": ratio, "load": load, "role": role, "recovery_s": {"real": real_recovery_s, "simulated": sim_recovery_s},
                                   "device": {
                                       "decode_b1_c0_step_s": device["formats"]["f32"]["decode"][0]["step_s"],
                                       "request_overhead_s": device["request_overhead_s"],
                                       "block_overhead_s": device["block_overhead_s"]}, "decisions_same": same, "real_detail": real,
                                   "sim_spans": sim_spans, "sim_routes": sim_routes})
            if self.args.tolerance is not None and role == "prediction":
                self.H.check(abs(ratio - 1) <= self.args.tolerance,
                             f"{row['name']}: real / simulated {ratio:.3f} within 1 +- {self.args.tolerance}")
                self.H.check(all(same.values()), f"{row['name']}: the same decisions in both worlds ({verdict})")
                if real_recovery_s or sim_recovery_s:
                    self.H.check(sim_recovery_s > 0 and abs(real_recovery_s / sim_recovery_s - 1) <= self.args.tolerance,
                                 f"{row['name']}: recovery time real / simulated within 1 +- {self.args.tolerance}")
        path = os.path.join(self.out, f"{self.stem}.fidelity.json")
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {path}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--out", help="output folder (default: a new temporary one)")
    parser.add_argument("--bouquet", default=shutil.which("bouquet") or "build/bouquet")
    parser.add_argument("--rows", help="comma-separated row names (default: every row)")
    parser.add_argument("--tolerance", type=float, help="check real / simulated within 1 +- this, and equal decisions")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--fit-hop-overhead", metavar="ROW",
                        help="fit the bouquet profile's client.hop_overhead_s on this calibration row (run first), "
                             "then predict the others with it")
    parser.add_argument("--profile", choices=["each-row", "once"], default="each-row",
                        help="measure this machine before each row (default), or once into OUT (kept for later runs)")
    parser.add_argument("--profile-repeats", type=int, default=3,
                        help="profile-device runs per device file, each figure their median (default 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to bouquet sim (e.g. a cost figure); the real run ignores it")
    args = parser.parse_args()
    fidelity = Fidelity(args)
    fidelity.H.run(fidelity.run)


if __name__ == "__main__":
    main()
