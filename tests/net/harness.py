"""What the Python tests that drive `bouquet` processes share: checks that print ok/FAIL and are
counted, processes started (waiting for the lines that say they are ready) and always stopped, and
one exit status for the whole script."""

import json
import re
import signal
import subprocess
import sys
import threading
import time


class Harness:
    def __init__(self, binary, scratch):
        self.binary = binary
        self.scratch = scratch
        self.processes = []
        self.failures = []

    def check(self, condition, what):
        print(("ok: " if condition else "FAIL: ") + what, flush=True)
        if not condition:
            self.failures.append(what)

    def start(self, args, log_name, wait_for=None, timeout_s=120):
        """Starts `bouquet ARGS`, its output (stdout and stderr) logged to SCRATCH/LOG_NAME; waits until
        every pattern of `wait_for` ({key: regex with one group}; default: the "listening on" line's
        address) has matched a line. Returns (process, {key: first group})."""
        wait_for = wait_for or {"address": r"listening on (\S+)"}
        log = open(f"{self.scratch}/{log_name}", "w")
        p = subprocess.Popen([self.binary] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.processes.append(p)
        found = {}
        ready = threading.Event()

        def pump():  # keeps draining the pipe so the process never blocks on it
            for line in p.stdout:
                log.write(line)
                log.flush()
                for key, pattern in wait_for.items():
                    m = re.search(pattern, line)
                    if m and key not in found:
                        found[key] = m.group(1)
                if len(found) == len(wait_for):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout_s) or len(found) < len(wait_for):
            status = p.poll()
            why = f"exited ({status})" if status is not None else f"printed no {sorted(set(wait_for) - set(found))}"
            raise RuntimeError(f"bouquet {' '.join(args)} {why}; see {log.name}")
        return p, found

    def wait_online(self, dht, address, timeout_s=60):
        """Waits until the DHT at `dht` lists a server at `address` (as it announced itself) online for
        some block: the moment a simulated server's record becomes visible (on a busy machine the put
        can take seconds)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            run = subprocess.run([self.binary, "swarm", "--initial-peers", dht, "--json", "--listen", "127.0.0.1:0"],
                                 capture_output=True, text=True, timeout=60)
            if run.returncode == 0:
                for m in json.loads(run.stdout)["models"]:
                    for block in m["blocks"]:
                        if any(s["address"] == address and s["state"] == "online" for s in block["servers"]):
                            return
            time.sleep(0.5)
        raise RuntimeError(f"{address} never showed online in the DHT")

    def stop_all(self):
        """Stops every process started so far (SIGTERM, then SIGKILL after 10 s) and forgets them."""
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.processes = []

    def run(self, main):
        """Runs main(); a crash of the test itself is a failure with its reason. Stops every process
        started, then exits 1 when a check failed, else 0."""
        try:
            main()
        except Exception as e:
            self.failures.append(f"{type(e).__name__}: {e}")
            print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        finally:
            self.stop_all()
        if self.failures:
            print(f"{len(self.failures)} check(s) failed; logs in {self.scratch}", flush=True)
            sys.exit(1)
        print("all checks passed", flush=True)
        sys.exit(0)
