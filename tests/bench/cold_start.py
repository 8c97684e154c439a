#!/usr/bin/env python3
"""Cold-start benchmark (not a test): for each release binary, the time from exec to its
first event handled under a local Lambda Runtime API, against a hello-world
`lambda_runtime` binary in the same run, and the peak memory (max RSS) of the process
after that invocation.

Run by `bash tests/bench/cold-start`, which builds the binaries and starts dynoxide:

  cold_start.py BIN_DIR DYNAMODB_ENDPOINT TABLE [ROUNDS]

BIN_DIR holds `<name>/bootstrap` as `cargo lambda build --release` leaves them. Each round
runs every binary once, in turn, so that the machine's drift touches them all alike; the
figures are the medians over the rounds. Each function gets the sample event of
`infra/events/` a dashboard or the runtime would send first (reads against the table
seeded with org_demo), and must answer it with the expected status.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def sample(name):
    with open(os.path.join(REPO, "infra", "events", name), encoding="utf-8") as f:
        return json.load(f)


# (binary, event, the statusCode its answer must carry; None for a non-HTTP answer)
CASES = [
    ("hello-lambda", {}, None),
    ("hello-sdk", {}, None),  # hello + the SDK client + one GetItem: what DynamoDB costs anyone
    ("hello-stripe", {}, None),  # hello-sdk + async-stripe's client (no request sent)
    ("account", sample("account/balance.json"), 200),
    ("usage", sample("usage/may-i-run.json"), 200),
    ("checkout", sample("checkout/get-auto-recharge.json"), 200),
    ("webhooks", sample("webhooks/stripe-event.json"), 400),  # unsigned sample: refused
    ("recharge", sample("recharge/scheduled.json"), None),
]


class Invocation:
    """One process's single event: handed out once, answered once."""

    def __init__(self, event):
        self.body = json.dumps(event).encode()
        self.request_id = str(uuid.uuid4())
        self.handed = False
        self.answered = threading.Event()
        self.answered_at = None
        self.answer = None
        self.error = None
        self.over = threading.Event()


class RuntimeApi(BaseHTTPRequestHandler):
    """The Lambda Runtime API's invocation routes (2018-06-01) for one process and its one
    invocation. Each run has a server of its own, so that a killed process's late request
    can never take the next process's event."""

    inv = None  # set on the per-run subclass

    def log_message(self, *_):
        pass

    def do_GET(self):
        inv = self.inv
        if self.path != "/2018-06-01/runtime/invocation/next":
            self.send_error(404)
            return
        if inv.handed:
            # The process asks for its second event: it gets none while we measure.
            inv.over.wait(60)
            return
        inv.handed = True
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", inv.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(inv.body)))
        self.end_headers()
        self.wfile.write(inv.body)

    def do_POST(self):
        now = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        inv = self.inv
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if self.path.endswith(f"/{inv.request_id}/response"):
            inv.answer = body
        else:
            inv.error = f"{self.path}: {body[:500]!r}"
        inv.answered_at = now
        inv.answered.set()


def run_once(binary, event, env):
    """Exec → first event answered (seconds), the answer, and max RSS (KiB)."""
    inv = Invocation(event)
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Api", (RuntimeApi,), {"inv": inv}))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_port}")
    started = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = inv.answered.wait(60)
    peak = high_water_kib(proc.pid)
    proc.kill()
    _, status, _ = os.wait4(proc.pid, 0)
    proc.returncode = status
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    inv.over.set()
    server.shutdown()
    server.server_close()
    if not ok or inv.error:
        raise SystemExit(f"{binary}: no answer ({inv.error or 'timeout'})\n{stderr[-2000:]}")
    return inv.answered_at - started, inv.answer, peak


def high_water_kib(pid):
    """The process's peak resident memory so far (VmHWM). Not wait4's ru_maxrss: that one
    keeps the forking Python's size across exec."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmHWM for {pid}")


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    bin_dir, endpoint, table = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
        "DYNAMODB_ENDPOINT": endpoint,
        "SECRETSMANAGER_ENDPOINT": "http://127.0.0.1:9",
        "TABLE_NAME": table,
        "STRIPE_SECRET_KEY": "sk_test_bench",
        "STRIPE_WEBHOOK_SECRET": "whsec_bench",
        "STRIPE_API_BASE": "http://127.0.0.1:9/",
        "BYOK_SECRET_PREFIX": "bench/byok/",
        # The IAM callers of the sample events (none set: every IAM route answers 403).
        "RUNTIME_ROLE_ARNS": "arn:aws:iam::123456789012:role/agent-runtime",
        "OPERATOR_ROLE_ARNS": "arn:aws:iam::123456789012:role/agent-credits-operator",
    }
    path = lambda name: os.path.join(bin_dir, name, "bootstrap")  # noqa: E731
    for name, _, _ in CASES:
        if not os.path.exists(path(name)):
            raise SystemExit(f"{path(name)} is missing: build it first (tests/bench/cold-start does)")

    # org_demo, owned by u_owner, for the sample events (not measured).
    _, answer, _ = run_once(path("account"), sample("account/create-org.json"), env)
    if json.loads(answer).get("statusCode") not in (201, 409):
        raise SystemExit(f"seeding org_demo failed: {answer!r}")

    times = {name: [] for name, _, _ in CASES}
    rss = {name: [] for name, _, _ in CASES}
    for _ in range(rounds):
        for name, event, want in CASES:
            took, answer, peak = run_once(path(name), event, env)
            got = json.loads(answer)
            if want is not None and got.get("statusCode") != want:
                raise SystemExit(f"{name} answered {answer[:500]!r}, expected status {want}")
            times[name].append(took)
            rss[name].append(peak)

    base = statistics.median(times["hello-lambda"])
    sdk = statistics.median(times["hello-sdk"])
    stripe = statistics.median(times["hello-stripe"])
    print(f"\ncold start: exec → first event answered, median of {rounds} rounds")
    print(
        f"{'binary':<14} {'size':>9} {'median':>9} {'min':>9} {'× hello':>8} {'× h-sdk':>8} "
        f"{'× h-strp':>8} {'peak RSS':>9}"
    )
    for name, _, _ in CASES:
        size = os.path.getsize(path(name)) / 1_000_000
        med = statistics.median(times[name])
        print(
            f"{name:<14} {size:>7.2f}MB {med * 1000:>7.1f}ms {min(times[name]) * 1000:>7.1f}ms "
            f"{med / base:>7.2f}× {med / sdk:>7.2f}× {med / stripe:>7.2f}× "
            f"{statistics.median(rss[name]) / 1024:>7.1f}MB"
        )


if __name__ == "__main__":
    main()
