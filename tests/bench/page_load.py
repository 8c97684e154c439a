"""Time from navigation to the balance shown on the billing page, in Debian's Chromium:
`performance.now()` (milliseconds since the navigation started) when `[data-balance]`
first appears, for 10 fresh loads; prints each and the median.

Run against a stack brought up by `bash tests/browser/run` or `infra/local/up`
(`. .local/env` first): `.venv/bin/python tests/bench/page_load.py [ORG] [SUB]`.
"""

import os
import statistics
import subprocess
import sys

from playwright.sync_api import sync_playwright

API = f"http://127.0.0.1:{os.environ.get('API_PORT', '3000')}"
ORG = sys.argv[1] if len(sys.argv) > 1 else "org_demo"
SUB = sys.argv[2] if len(sys.argv) > 2 else "u_owner"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

token = subprocess.run([os.path.join(REPO, "target/debug/local-gateway"), "token", SUB],
                       check=True, capture_output=True, text=True).stdout.strip()
times = []
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    for i in range(11):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{API}/orgs/{ORG}/billing#token={token}")
        # Checked in the page on every animation frame: the time is the page's own.
        ms = page.wait_for_function(
            "() => document.querySelector('[data-balance]') ? performance.now() : false",
            polling="raf").json_value()
        context.close()
        if i == 0:
            continue  # the first load warms the functions under cargo lambda watch
        times.append(ms)
        print(f"load {i}: {ms:.0f} ms")
    browser.close()
print(f"median of {len(times)}: {statistics.median(times):.0f} ms")
