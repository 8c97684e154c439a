"""The billing page in a real browser (Debian's Chromium, driven by Playwright), against
the whole local stack that `tests/browser/run` brings up: the gateway, the functions under
`cargo lambda watch`, dynoxide, moto and the Stripe simulator.

Each test asserts what the page shows. Screenshots of the card in each state go to
`target/browser/` (not committed).
"""

import http.server
import json
import os
import re
import pathlib
import subprocess
import threading
import time
import urllib.request

import pytest
from playwright.sync_api import Page, expect, sync_playwright

REPO = pathlib.Path(__file__).resolve().parents[2]
API = f"http://127.0.0.1:{os.environ['API_PORT']}"
SIM = f"http://127.0.0.1:{os.environ['STRIPE_SIM_PORT']}"
SHOTS = REPO / "target" / "browser"
AXE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"


def token(sub: str) -> str:
    out = subprocess.run(
        [str(REPO / "target/debug/local-gateway"), "token", sub],
        check=True, capture_output=True, text=True, env=os.environ,
    )
    return out.stdout.strip()


def api(method: str, path: str, sub: str | None = None, body=None, signed=False, operator=False):
    """A call to the local HTTP API as a dashboard user (sub), the runtime (signed) or an
    operator (operator)."""
    args = ["curl", "-s", "-w", "\n%{http_code}", "-X", method, f"{API}{path}"]
    if sub:
        args += ["-H", f"authorization: Bearer {token(sub)}"]
    if signed:
        args += ["--aws-sigv4", "aws:amz:us-east-1:execute-api", "--user",
                 f"{os.environ['LOCAL_RUNTIME_ACCESS_KEY_ID']}:{os.environ['LOCAL_RUNTIME_SECRET_ACCESS_KEY']}"]
    if operator:
        args += ["--aws-sigv4", "aws:amz:us-east-1:execute-api", "--user",
                 f"{os.environ['LOCAL_OPERATOR_ACCESS_KEY_ID']}:{os.environ['LOCAL_OPERATOR_SECRET_ACCESS_KEY']}"]
    if body is not None:
        args += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    text, status = out.rsplit("\n", 1)
    return int(status), (json.loads(text) if text else None)


def new_org(owner: str, members=(), mode="credits", **policy) -> str:
    org = f"org_b{time.time_ns() % 10**12}"
    status, body = api("POST", "/v1/orgs", owner,
                       {"id": org, "name": f"Browser {org}", "runtime": "claude_code", "billing_mode": mode,
                        **policy})
    assert status == 201, body
    for member, role in members:
        status, body = api("PUT", f"/v1/orgs/{org}/members/{member}", owner, {"role": role})
        assert status == 200, body
    return org


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()


def open_billing(page: Page, org: str, sub: str) -> None:
    page.goto(f"{API}/orgs/{org}/billing#token={token(sub)}")


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def back_credited(page: Page, org: str) -> None:
    """Back on the page after paying, once it has shown the purchase credited (the page
    settles then: nothing re-renders under the test's hands)."""
    page.wait_for_url(f"{API}/orgs/{org}/billing**")
    expect(page.locator("[data-notice]")).to_contain_text("Purchase credited")


def pay_in_simulator(page: Page, card="pm_card_visa") -> None:
    """The simulator's payment page: click the test card's button."""
    page.wait_for_url(f"{SIM}/pay/**")
    page.locator(f"button[value='{card}']").first.click()


def test_an_owner_buys_100_and_comes_back_to_100_and_20000_credits(page: Page):
    org = new_org("u_buyer")
    open_billing(page, org, "u_buyer")
    expect(page.locator("[data-balance]")).to_have_text("$0.00")
    expect(page.locator("[data-badge]")).to_have_text("Out of credits")
    shot(page, "card-empty")
    buy(page, org, "Buy $100.00 credits")
    expect(page.locator("[data-balance]")).to_have_text("$100.00")
    expect(page.locator("[data-credits]")).to_have_text("20,000 credits")
    expect(page.locator("[data-added]")).to_have_text("$100.00")
    expect(page.locator("[data-recent] tr").first).to_contain_text("purchase")
    shot(page, "card-after-purchase")


def test_a_custom_amount_is_bought_and_a_bad_one_is_refused_inline(page: Page):
    org = new_org("u_custom")
    open_billing(page, org, "u_custom")
    page.get_by_label("Custom amount (USD)").fill("5")
    page.get_by_role("button", name="Purchase credits").click()
    expect(page.locator("[data-error=buy]")).to_contain_text("10")
    page.get_by_label("Custom amount (USD)").fill("25.50")
    page.get_by_role("button", name="Purchase credits").click()
    pay_in_simulator(page)
    back_credited(page, org)
    expect(page.locator("[data-balance]")).to_have_text("$25.50")
    expect(page.locator("[data-credits]")).to_have_text("5,100 credits")


def test_a_package_is_bought_with_its_bonus(page: Page):
    # tests/browser/run configures one package: $50 for $55 of credits.
    org = new_org("u_pack")
    open_billing(page, org, "u_pack")
    buy(page, org, "Buy Starter")
    expect(page.locator("[data-balance]")).to_have_text("$55.00")
    expect(page.locator("[data-credits]")).to_have_text("11,000 credits")


def test_auto_recharge_shows_the_servers_errors_inline_then_saves(page: Page):
    org = new_org("u_ar")
    open_billing(page, org, "u_ar")
    form = page.locator("form[data-form=recharge]")
    form.get_by_label("Auto top-up on").check()
    # No card saved yet: the server says so.
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-error=recharge]")).not_to_be_empty()
    no_card = page.locator("[data-error=recharge]").inner_text()
    assert "card" in no_card.lower(), no_card
    # Buy once (the card is saved), then a threshold above the amount is refused inline.
    buy(page, org, "Buy $100.00 credits")
    expect(page.locator("[data-balance]")).to_have_text("$100.00")
    form = page.locator("form[data-form=recharge]")
    form.get_by_label("Auto top-up on").check()
    form.get_by_label("When the balance is at or below (USD)").fill("500")
    form.get_by_label("Top up by (USD)").fill("100")
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-error=recharge]")).to_contain_text("threshold")
    shot(page, "auto-recharge-error")
    form.get_by_label("When the balance is at or below (USD)").fill("20")
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-ar-state]")).to_have_text("On")
    expect(page.locator("[data-notice]")).to_contain_text("Auto top-up saved")
    expect(page.locator("[data-ar-target]")).to_have_count(0)
    # To a target instead of by an amount: a target too close to the threshold is refused
    # inline, a good one saved and shown, and emptied it goes back to the amount.
    form = page.locator("form[data-form=recharge]")
    form.get_by_label("Or bring the balance back to (USD)").fill("20.10")
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-error=recharge]")).to_contain_text("target")
    form.get_by_label("Or bring the balance back to (USD)").fill("150")
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-ar-target]")).to_have_text("it is brought back to $150.00")
    status, saved = api("GET", f"/v1/orgs/{org}/auto-recharge", "u_ar")
    assert (status, saved["target_usd"]) == (200, "150.00"), saved
    # Saving another setting keeps the target: the field shows what is saved.
    form = page.locator("form[data-form=recharge]")
    expect(form.get_by_label("Or bring the balance back to (USD)")).to_have_value("150.00")
    form.get_by_label("At most per day").fill("4")
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-notice]")).to_contain_text("Auto top-up saved")
    status, saved = api("GET", f"/v1/orgs/{org}/auto-recharge", "u_ar")
    assert (status, saved["target_usd"], saved["max_per_day"]) == (200, "150.00", 4), saved
    form = page.locator("form[data-form=recharge]")
    form.get_by_label("Or bring the balance back to (USD)").fill("")
    form.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("[data-ar-target]")).to_have_count(0)
    status, saved = api("GET", f"/v1/orgs/{org}/auto-recharge", "u_ar")
    assert (status, saved["target_usd"]) == (200, None), saved


def test_usage_to_zero_shows_the_low_badge_first_then_the_exhausted_state(page: Page):
    org = new_org("u_spend")
    bought(page, org, "u_spend")
    # $90 billed (cost 60 at 1.5x): $10 left, below the $20 default: low.
    status, body = api("POST", f"/v1/orgs/{org}/usage", body={"request_id": "b-1", "member": "u_spend",
                       "agent": "agent_7", "cost": "60.00"}, signed=True)
    assert status == 200, body
    page.reload()
    expect(page.locator("[data-balance]")).to_have_text("$10.00")
    expect(page.locator("[data-badge]")).to_have_text("Low balance")
    expect(page.locator("[data-exhausted]")).to_have_count(0)
    # The month's total and the day's bar come from usage by day.
    expect(page.locator("[data-month]")).to_have_text("$90.00")
    expect(page.locator("[data-chart]")).to_have_attribute("aria-label", re.compile(r"\$90\.00 in 1 calls"))
    expect(page.locator("[data-chart] rect[height='80']")).to_have_count(1)
    expect(page.locator("[data-by-model]")).to_contain_text("(unattributed): $90.00")
    shot(page, "card-low")
    status, body = api("POST", f"/v1/orgs/{org}/usage", body={"request_id": "b-2", "member": "u_spend",
                       "agent": "agent_7", "cost": "10.00"}, signed=True)
    assert status == 200, body
    page.reload()
    expect(page.locator("[data-balance]")).to_have_text("$0.00")
    expect(page.locator("[data-badge]")).to_have_text("Out of credits")
    expect(page.locator("[data-exhausted]")).to_contain_text("Your agents are paused")
    expect(page.locator("[data-exhausted]")).to_contain_text("Buy credits")
    shot(page, "card-exhausted")


def test_a_member_sees_read_only_billing_and_a_stranger_an_error(page: Page):
    org = new_org("u_boss", members=[("u_reader", "member")])
    open_billing(page, org, "u_reader")
    expect(page.locator("[data-role]")).to_have_text("member")
    expect(page.locator("[data-balance]")).to_have_text("$0.00")
    expect(page.locator("[data-no-purchase]")).to_contain_text("Only owners")
    expect(page.get_by_role("button", name="Save auto top-up")).to_have_count(0)
    expect(page.get_by_label("Auto top-up on")).to_be_disabled()
    expect(page.get_by_label("Or bring the balance back to (USD)")).to_be_disabled()
    shot(page, "member-view")
    open_billing(page, org, "u_stranger")
    expect(page.get_by_role("alert")).to_contain_text(f"You are not a member of {org}")


def test_the_history_csv_downloads(page: Page):
    org = new_org("u_csv")
    bought(page, org, "u_csv")
    expect(page.locator("[data-history] tr").first).to_contain_text("purchase")
    with page.expect_download() as d:
        page.get_by_role("button", name="Download CSV").click()
    path = d.value.path()
    text = pathlib.Path(path).read_text()
    assert text.startswith("id,created_at,kind,amount"), text[:80]
    assert ",purchase,100.00," in text, text
    assert d.value.suggested_filename == f"{org}-history.csv"


def test_org_creation_with_byok_shows_the_key_field_and_never_the_key_again(page: Page):
    page.goto(f"{API}/billing/new#token={token('u_creator')}")
    expect(page.get_by_label("Provider key", exact=True)).to_be_hidden()
    page.get_by_label("Bring your own provider key").check()
    expect(page.get_by_label("Provider key", exact=True)).to_be_visible()
    org = f"org_k{time.time_ns() % 10**12}"
    key = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa-TEST"
    page.get_by_label("Org id").fill(org)
    page.get_by_label("Name").fill("Key Co")
    page.get_by_label("Provider key", exact=True).fill(key)
    page.get_by_role("button", name="Create").click()
    expect(page.locator("[data-created]")).to_contain_text("····TEST")
    expect(page.locator("[data-created]")).to_contain_text("never shown again")
    assert key not in page.content()
    page.get_by_role("link", name="Key Co").click()
    expect(page.locator("[data-key=anthropic]")).to_contain_text("····TEST")
    assert key not in page.content()
    # Its wallet is not used: no buy buttons and no auto top-up, but the way to credits.
    expect(page.locator("[data-not-credits]")).to_contain_text("switch it to credits")
    expect(page.locator("[data-bulk]")).to_have_count(0)
    expect(page.locator("[data-form=recharge]")).to_have_count(0)


def test_no_serious_or_critical_accessibility_violations(browser):
    if not AXE.exists():
        pytest.skip("axe-core is not installed (tests/browser/run installs it with npm)")
    # axe is injected as an inline script, which the page's CSP refuses: bypass it here only.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    org = new_org("u_a11y", members=[("u_a11y_member", "member")])
    open_billing(page, org, "u_a11y")
    expect(page.locator("[data-balance]")).to_have_text("$0.00")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, bad
    page.goto(f"{API}/billing/new")
    expect(page.get_by_label("Org id")).to_be_visible()
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"]) for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, bad
    context.close()


def sweep() -> None:
    """One recharge sweep, as the schedule runs it, then the webhooks it caused."""
    watch = f"http://127.0.0.1:{os.environ['WATCH_PORT']}/2015-03-31/functions/recharge/invocations"
    event = (REPO / "infra/events/recharge/scheduled.json").read_bytes()
    with urllib.request.urlopen(urllib.request.Request(watch, data=event, method="POST"), timeout=300) as r:
        assert r.status == 200
    urllib.request.urlopen(urllib.request.Request(f"{SIM}/_sim/webhooks/flush", data=b"{}", method="POST"))


def buy(page: Page, org: str, button: str) -> None:
    """Click a buy button, pay with the Visa test card, and wait back on the page."""
    page.get_by_role("button", name=button).click()
    pay_in_simulator(page)
    back_credited(page, org)


def bought(page: Page, org: str, sub: str) -> None:
    """The owner buys $100 on the page (the card is saved for auto top-up)."""
    open_billing(page, org, sub)
    buy(page, org, "Buy $100.00 credits")
    expect(page.locator("[data-balance]")).to_have_text("$100.00")


def test_a_failed_top_up_shows_its_reason_and_the_low_alert_is_marked_read(page: Page):
    org = new_org("u_fail")
    bought(page, org, "u_fail")
    status, ar = api("PUT", f"/v1/orgs/{org}/auto-recharge", "u_fail",
                     {"enabled": True, "threshold_usd": "20.00", "amount_usd": "100.00"})
    assert status == 200 and ar["payment_method"], ar
    # The saved card now fails with insufficient funds.
    req = urllib.request.Request(f"{SIM}/_sim/payment_methods/{ar['payment_method']}/card",
                                 data=json.dumps({"card": "pm_card_chargeDeclinedInsufficientFunds"}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req)
    status, body = api("POST", f"/v1/orgs/{org}/usage", body={"request_id": "f-1", "member": "u_fail",
                       "agent": "agent_7", "cost": "60.00"}, signed=True)
    assert status == 200, body
    sweep()
    page.reload()
    expect(page.locator("[data-balance]")).to_have_text("$10.00")
    expect(page.locator("[data-suspended]")).to_contain_text("insufficient_funds")
    notes = page.locator("ul.notes")
    expect(notes).to_contain_text("credit purchase failed")
    expect(notes).to_contain_text("credit balance low")
    shot(page, "auto-recharge-failed")
    unread = page.locator("[data-unread]").inner_text()
    assert unread != "0 unread", unread
    page.get_by_role("button", name="Mark all read").click()
    expect(page.locator("[data-unread]")).to_have_text("0 unread")
    expect(page.get_by_role("button", name="Mark all read")).to_have_count(0)


def test_an_owner_sets_a_members_limit_and_the_member_sees_it(browser):
    org = new_org("u_limits", members=[("u_capped", "member")])
    owner = browser.new_context().new_page()
    open_billing(owner, org, "u_limits")
    owner.get_by_label("Monthly limit for u_capped (USD)").fill("25")
    owner.locator("form[data-member=u_capped]").get_by_role("button", name="Set").click()
    expect(owner.locator("[data-notice]")).to_contain_text("Limit saved for u_capped")
    expect(owner.get_by_label("Monthly limit for u_capped (USD)")).to_have_value("25.00")
    member = browser.new_context().new_page()
    open_billing(member, org, "u_capped")
    expect(member.locator("[data-usage]")).to_contain_text("$25.00")
    # A member has no limit inputs.
    expect(member.get_by_label("Monthly limit for u_capped (USD)")).to_have_count(0)


def test_an_owner_changes_the_org_settings_and_the_change_is_listed_with_who(browser):
    org = new_org("u_sets", members=[("u_sets_admin", "admin")])
    admin = browser.new_context().new_page()
    open_billing(admin, org, "u_sets_admin")
    # Owners alone buy by default, and only owners change that.
    expect(admin.locator("[data-no-purchase]")).to_be_visible()
    expect(admin.get_by_label("Who may buy credits")).to_be_disabled()
    owner = browser.new_context().new_page()
    open_billing(owner, org, "u_sets")
    owner.get_by_label("Who may buy credits").select_option("owners_and_admins")
    owner.get_by_label("Low-balance alert below (USD)").fill("45")
    owner.get_by_role("button", name="Save settings").click()
    expect(owner.locator("[data-notice]")).to_contain_text("Settings saved")
    expect(owner.locator("[data-changes]")).to_contain_text("purchase policy: owners_only → owners_and_admins")
    expect(owner.locator("[data-changes]")).to_contain_text("by u_sets")
    expect(owner.get_by_label("Low-balance alert below (USD)")).to_have_value("45.00")
    owner.get_by_label("Low-balance alert below (USD)").fill("-5")
    owner.get_by_role("button", name="Save settings").click()
    expect(owner.locator("[data-error=settings]")).to_contain_text("negative")
    # Now the admin may buy.
    open_billing(admin, org, "u_sets_admin")
    expect(admin.locator("[data-bulk]")).to_be_visible()
    shot(owner, "org-settings")


def test_byok_keys_rotate_and_a_key_in_use_is_explained(page: Page):
    org = f"org_y{time.time_ns() % 10**12}"
    first = "sk-proj-Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0KkLl-FIRS"
    status, body = api("POST", "/v1/orgs", "u_keys", {"id": org, "name": "Keys Co", "runtime": "codex",
                       "billing_mode": "byok", "keys": {"open_ai": first}})
    assert status == 201, body
    open_billing(page, org, "u_keys")
    key = page.locator("[data-key=open_ai]")
    expect(key).to_contain_text("····FIRS")
    second = "sk-proj-Ll1Mm2Nn3Oo4Pp5Qq6Rr7Ss8Tt9Uu0VvWw-SECO"
    key.get_by_label("New open_ai key").fill(second)
    key.get_by_role("button", name="Rotate").click()
    expect(page.locator("[data-notice]")).to_contain_text("····SECO")
    expect(page.locator("[data-key=open_ai]")).to_contain_text("rotated")
    page.locator("[data-key=open_ai]").get_by_role("button", name="Delete").click()
    # A byok org on Codex needs its OpenAI key: the page says why it stays.
    expect(page.locator("[data-error=keys]")).to_contain_text("This key is in use: the codex runtime")
    expect(page.locator("[data-key=open_ai]")).to_contain_text("····SECO")
    content = page.content()
    assert first not in content and second not in content


def test_a_member_who_may_buy_but_not_see_billing_can_still_buy(page: Page):
    org = new_org("u_policy", members=[("u_buyer2", "member")],
                  purchase_policy="any_member", members_see_billing=False)
    open_billing(page, org, "u_buyer2")
    expect(page.locator("[data-hidden-billing]")).to_contain_text("not shared billing")
    expect(page.locator("[data-balance]")).to_have_count(0)
    page.get_by_role("button", name="Buy $100.00 credits").click()
    pay_in_simulator(page)
    page.wait_for_url(f"{API}/orgs/{org}/billing**")
    expect(page.locator("[data-notice]")).to_contain_text("Payment received")
    # Credited once Stripe's webhook is in (the simulator delivers before it redirects).
    status, card = api("GET", f"/v1/orgs/{org}/balance", "u_policy")
    assert (status, card["balance"]) == (200, "100.00"), card


def serve_dashboard(html: str) -> http.server.ThreadingHTTPServer:
    """A dashboard on another origin (EMBED_PORT), serving one page."""

    class Dashboard(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["EMBED_PORT"])), Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_dashboard_on_another_origin_embeds_the_page_in_an_iframe(page: Page):
    """The README's iframe embedding: the dashboard's origin is in FRAME_ANCESTORS
    (tests/browser/run sets it), and the page gets the user's token in its address."""
    org = new_org("u_embed")
    src = f"{API}/orgs/{org}/billing#token={token('u_embed')}"
    server = serve_dashboard(f"<!doctype html><title>Dashboard</title><h1>Our dashboard</h1>"
                             f"<iframe title='Billing' src='{src}' width='900' height='700'></iframe>")
    try:
        page.goto(f"http://127.0.0.1:{os.environ['EMBED_PORT']}/")
        frame = page.frame_locator("iframe[title=Billing]")
        expect(frame.locator("[data-balance]")).to_have_text("$0.00")
        expect(frame.locator("[data-role]")).to_have_text("owner")
        shot(page, "embedded-in-iframe")
    finally:
        server.shutdown()
        server.server_close()


def test_a_dashboard_on_another_origin_uses_the_web_component(page: Page):
    """The README's web-component embedding: the dashboard loads billing.js from the API
    and gives the element the user's token; the API allows its origin (DASHBOARD_ORIGINS,
    the template's DashboardOrigins)."""
    org = new_org("u_component")
    html = f"""<!doctype html><html lang="en"><title>Dashboard</title>
<link rel="stylesheet" href="{API}/billing/billing.css">
<main><h1>Our dashboard</h1><div id="slot"></div></main>
<script type="module">
import "{API}/billing/billing.js";
await customElements.whenDefined("agent-credits-billing");
const el = document.createElement("agent-credits-billing");
el.token = "{token('u_component')}";
el.setAttribute("org", "{org}");
el.setAttribute("api", "{API}");
document.getElementById("slot").append(el);
</script></html>"""
    server = serve_dashboard(html)
    try:
        page.goto(f"http://127.0.0.1:{os.environ['EMBED_PORT']}/")
        expect(page.locator("agent-credits-billing [data-balance]")).to_have_text("$0.00")
        expect(page.locator("agent-credits-billing [data-role]")).to_have_text("owner")
        expect(page.get_by_role("button", name="Buy $100.00 credits")).to_be_visible()
    finally:
        server.shutdown()
        server.server_close()


def test_earned_credits_show_as_withdrawable_and_an_owner_withdraws_them(browser):
    org = new_org("u_earner", members=[("u_reader", "member")])
    status, body = api("POST", f"/v1/orgs/{org}/grants", body={
        "kind": "referral", "amount_usd": "40.00", "request_id": "ref_browser"}, operator=True)
    assert status == 201, body
    status, body = api("POST", f"/v1/orgs/{org}/grants", body={
        "kind": "promotional", "amount_usd": "5.00", "request_id": "promo_browser",
        "expires_at": "2099-01-01T00:00:00Z"}, operator=True)
    assert status == 201, body
    owner = browser.new_context().new_page()
    open_billing(owner, org, "u_earner")
    expect(owner.locator("[data-earned]")).to_have_text("$40.00")
    expect(owner.locator("[data-withdrawable]")).to_have_text("$40.00")
    expect(owner.locator("[data-expiring]")).to_contain_text("$5.00")
    # Below the minimum: the server's refusal, inline; nothing leaves.
    owner.get_by_label("Withdraw (USD)").fill("10")
    owner.get_by_role("button", name="Withdraw", exact=True).click()
    expect(owner.locator("[data-error=withdraw]")).to_contain_text("25")
    owner.get_by_label("Withdraw (USD)").fill("30")
    owner.get_by_role("button", name="Withdraw", exact=True).click()
    expect(owner.locator("[data-notice]")).to_contain_text("pending")
    expect(owner.locator("[data-withdrawable]")).to_have_text("$10.00")
    expect(owner.locator("[data-withdrawals] [data-state]")).to_have_text("pending")
    shot(owner, "withdrawal-pending")
    # An operator pays it out: the list says so, with the reference.
    wid = api("GET", f"/v1/orgs/{org}/withdrawals", "u_earner")[1]["withdrawals"][0]["id"]
    status, body = api("POST", f"/v1/orgs/{org}/withdrawals/{wid}/paid",
                       body={"payout_reference": "wire_browser"}, operator=True)
    assert status == 200, body
    owner.reload()
    expect(owner.locator("[data-withdrawals] [data-state]")).to_have_text("paid")
    expect(owner.locator("[data-withdrawals]")).to_contain_text("wire_browser")
    # A member sees the earned credits but has no withdraw form.
    reader = browser.new_context().new_page()
    open_billing(reader, org, "u_reader")
    expect(reader.locator("[data-w-withdrawable]")).to_have_text("$10.00")
    expect(reader.get_by_label("Withdraw (USD)")).to_have_count(0)


def test_an_owner_subscribes_upgrades_and_opens_invoices_and_the_portal(browser):
    org = new_org("u_planner", members=[("u_viewer", "member")])
    owner = browser.new_context().new_page()
    owner.set_default_timeout(60_000)
    open_billing(owner, org, "u_planner")
    expect(owner.locator("[data-no-subscription]")).to_be_visible()
    expect(owner.locator("[data-plan]")).to_have_count(3)
    # Subscribing goes through Stripe Checkout in subscription mode.
    owner.locator("[data-plan=price_team_monthly] button[data-subscribe]").click()
    pay_in_simulator(owner)
    owner.wait_for_url(f"{API}/orgs/{org}/billing**")
    expect(owner.locator("[data-notice]")).to_contain_text("Subscribed")
    # The first invoice's grant arrives through Stripe's events: the page shows it once
    # reloaded after it landed.
    for _ in range(60):
        status, card = api("GET", f"/v1/orgs/{org}/balance", "u_planner")
        if status == 200 and card["buckets"]["base"] == "50.00":
            break
        time.sleep(0.5)
    assert card["buckets"]["base"] == "50.00", card
    owner.reload()
    expect(owner.locator("[data-subscription]")).to_contain_text("Team")
    expect(owner.locator("[data-plan=price_team_monthly][data-current]")).to_have_count(1)
    shot(owner, "plan-subscribed")
    # An upgrade applies now: the page says so, and the prorated base arrives.
    owner.locator("[data-plan=price_scale_monthly] button[data-change-plan]").click()
    expect(owner.locator("[data-notice]")).to_contain_text("Plan upgraded")
    expect(owner.locator("[data-plan=price_scale_monthly][data-current]")).to_have_count(1)
    for _ in range(60):
        status, card = api("GET", f"/v1/orgs/{org}/balance", "u_planner")
        if status == 200 and card["buckets"]["base"] != "50.00":
            break
        time.sleep(0.5)
    # Upgraded at once at the start of the period: close to the whole difference (200).
    assert 249 <= float(card["buckets"]["base"]) <= 250, card
    # Invoices: the subscription's and the upgrade's, each with Stripe's page.
    owner.reload()
    expect(owner.locator("[data-invoices] tr")).to_have_count(2)
    with owner.context.expect_page() as opened:
        owner.locator("[data-invoices] tr").first.get_by_role("link", name="View").click()
    opened.value.wait_for_load_state()
    # The portal: Stripe's page for the owner's own payment methods and invoices.
    owner.locator("button[data-portal]").click()
    owner.wait_for_url(f"{SIM}/portal/**")
    expect(owner).to_have_title(re.compile("Billing portal"))
    # A member sees the plan but can change nothing, and no invoices.
    viewer = browser.new_context().new_page()
    open_billing(viewer, org, "u_viewer")
    expect(viewer.locator("[data-subscription]")).to_contain_text("Scale")
    expect(viewer.locator("button[data-change-plan], button[data-subscribe], button[data-cancel-plan]")).to_have_count(0)
    expect(viewer.locator("button[data-portal]")).to_have_count(0)
    # Cancelling: at the period's end.
    owner.goto(f"{API}/orgs/{org}/billing#token={token('u_planner')}")
    owner.locator("button[data-cancel-plan]").click()
    expect(owner.locator("[data-notice]")).to_contain_text("Plan cancelled")
    expect(owner.locator("[data-subscription]")).to_contain_text("ends")
