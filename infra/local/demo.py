#!/usr/bin/env python3
"""The walkthrough, end to end, against the stack of `infra/local/up`: create an org, buy
$100 of credits (the simulated checkout completes and Stripe's webhook credits it), turn
auto-recharge on, spend usage until the balance is low, run the recharge sweep, and read
the balance card after each step. Each step's balance is checked; a wrong one stops the
demo with exit status 1.

Standard library only. WATCH_PORT (9000) and STRIPE_SIM_PORT (12111) as in `up`.
"""

import json
import os
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(__file__))
import api  # noqa: E402

SIM = f"http://127.0.0.1:{os.environ.get('STRIPE_SIM_PORT', '12111')}"
OWNER = "u_demo"


def step(title):
    print(f"\n=== {title}")


def check(what, status, body, want=200):
    if status != want:
        raise SystemExit(f"{what}: expected {want}, got {status} {json.dumps(body)}")
    return body


def card(org, want_balance):
    status, c = api.invoke("account", api.event("GET", f"/v1/orgs/{org}/balance", sub=OWNER))
    check("balance card", status, c)
    recharge = c.get("auto_recharge") or {}
    badge = "EXHAUSTED" if c["exhausted"] else ("LOW" if c["low_balance"] else "ok")
    print(f"  balance ${c['balance']}  ({c['credits']} credits at {c['credits_per_usd']}/$)  [{badge}]")
    print(f"  lifetime added ${c['lifetime_added']}  spent ${c['lifetime_spent']}  state {c['state']}")
    if recharge.get("enabled"):
        print(f"  auto-recharge: on, at or below ${recharge.get('threshold')}")
    else:
        print("  auto-recharge: off")
    for e in c["recent"]:
        print(f"    {e['kind']:<14} {e['amount']:>9}  -> {e['balance_after']}")
    if Decimal(c["balance"]) != Decimal(want_balance):
        raise SystemExit(f"the balance is {c['balance']}, expected {want_balance}")
    return c


def sweep():
    """One recharge sweep, as EventBridge Scheduler invokes it; then the webhooks it caused."""
    status, out = api.post(
        f"{api.WATCH}/2015-03-31/functions/recharge/invocations",
        api.sample("recharge/scheduled.json"),
    )
    check("recharge sweep", status, out)
    print(f"  sweep: {json.dumps(out)}")
    api.post(f"{SIM}/_sim/webhooks/flush", {})


def main():
    org = f"org_walk_{int(time.time())}"

    step(f"1. Create {org} on credits (as {OWNER}, who becomes its owner)")
    status, body = api.invoke(
        "account",
        api.event(
            "POST",
            "/v1/orgs",
            {"id": org, "name": "Walkthrough Co", "runtime": "claude_code", "billing_mode": "credits"},
            sub=OWNER,
        ),
    )
    check("create org", status, body, 201)
    card(org, "0")

    step("2. Buy $100 of credits: a Checkout session, paid in the simulator with pm_card_visa")
    status, session = api.invoke(
        "checkout", api.event("POST", f"/v1/orgs/{org}/checkout", {"bulk": {"quantity": 1}}, sub=OWNER)
    )
    check("checkout", status, session, 201)
    print(f"  session {session['session_id']}: {session['url']}")
    status, paid = api.post(f"{SIM}/_sim/checkout/sessions/{session['session_id']}/complete", {"card": "pm_card_visa"})
    check("simulated payment", status, paid)
    api.post(f"{SIM}/_sim/webhooks/flush", {})
    card(org, "100")

    step("3. Turn auto-recharge on: below $20, charge the saved card $100")
    status, body = api.invoke(
        "checkout",
        api.event(
            "PUT",
            f"/v1/orgs/{org}/auto-recharge",
            {"enabled": True, "threshold_usd": "20.00", "amount_usd": "100.00"},
            sub=OWNER,
        ),
    )
    check("auto-recharge", status, body)
    card(org, "100")

    step("4. The agent runtime reports 4 model calls of $15.00 provider cost (x1.5 markup = $22.50 each)")
    for i in range(1, 5):
        status, debit = api.invoke(
            "usage",
            api.event(
                "POST",
                f"/v1/orgs/{org}/usage",
                {"request_id": f"{org}-call-{i}", "member": OWNER, "agent": "agent_7", "cost": "15.00"},
            ),
        )
        check("usage", status, debit)
        print(f"  call {i}: billed ${debit['billed']}, available ${debit['available']}")
    c = card(org, "10")
    if not c["low_balance"]:
        raise SystemExit("$10 is below the $20 threshold: the card should show the low badge")

    step("5. The recharge sweep runs (EventBridge every minute in AWS; here, invoked once)")
    sweep()
    card(org, "110")

    step("6. Run the sweep again: the org is above its threshold, nothing is charged twice")
    sweep()
    card(org, "110")
    print("\nThe walkthrough's balances were right at every step: 0, 100, 100, 10, 110, 110.")


if __name__ == "__main__":
    main()
