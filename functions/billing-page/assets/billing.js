// The billing page: <agent-credits-billing>, a custom element with no dependencies.
//
// It calls the agent-credits HTTP API with the signed-in user's token and shows what the
// API answers; the API enforces every permission, the page only hides what the caller's
// role cannot use. Attributes: `org` (else read from /orgs/{org}/billing), `api` (the
// API's base URL; else this page's origin). The token: the element's `token` property, or
// `#token=<jwt>` in the page's address (kept in sessionStorage, removed from the address).

const TOKEN_KEY = "agent-credits-token";
const PROVIDERS = ["anthropic", "open_ai", "google", "open_router", "open_code"];
const RUNTIMES = [
  ["claude_code", "Claude Code", "anthropic"],
  ["codex", "Codex", "open_ai"],
  ["gemini_cli", "Gemini CLI", "google"],
  ["open_code", "OpenCode", "open_code"],
  ["hermes", "Hermes", "open_router"],
];
const KINDS = ["purchase", "auto_top_up", "usage", "grant", "plan_grant", "rollover", "refund",
  "dispute", "adjustment", "hold", "capture", "release", "referral", "creator_earnings", "support",
  "promotional", "expired", "withdrawal", "withdrawal_paid", "withdrawal_returned", "referral_reversed"];
const RANK = { member: 0, admin: 1, owner: 2 };

const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
  (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// Money stays a decimal string, shown exactly: [digits as BigInt, scale], never a float.
function dec(value) {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(value ?? "").trim());
  if (!m) return null;
  const frac = m[3] || "";
  const n = BigInt(m[2] + frac);
  return [m[1] ? -n : n, frac.length];
}
function addDec(a, b) {
  const scale = Math.max(a[1], b[1]);
  return [a[0] * 10n ** BigInt(scale - a[1]) + b[0] * 10n ** BigInt(scale - b[1]), scale];
}
function decText([n, scale]) {
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().padStart(scale + 1, "0");
  const cut = digits.length - scale;
  return `${neg ? "-" : ""}${digits.slice(0, cut)}${scale ? `.${digits.slice(cut)}` : ""}`;
}
// "$1,234.50"; fractions of a cent are shown, not rounded ("$99.995").
function usd(value) {
  const d = dec(value);
  if (d === null) return esc(value);
  const [n, scale] = d;
  const neg = n < 0n;
  const a = neg ? -n : n;
  const unit = 10n ** BigInt(scale);
  const frac = (a % unit).toString().padStart(scale, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${neg ? "-" : ""}$${(a / unit).toLocaleString("en-US")}.${frac}`;
}
function amount(value) {
  // Ledger amounts keep their precision (usage may be fractions of a cent).
  const s = String(value ?? "");
  const neg = s.startsWith("-");
  const digits = neg ? s.slice(1) : s;
  return `${neg ? "-" : "+"}$${esc(digits)}`;
}
function credits(n) {
  const s = String(n ?? "0").split(".")[0];
  try { return BigInt(s).toLocaleString("en-US"); } catch { return esc(n); }
}
function creditsOf(usdValue, perUsd) {
  const d = dec(usdValue);
  return d === null ? "0" : ((d[0] * BigInt(perUsd)) / 10n ** BigInt(d[1])).toLocaleString("en-US");
}
// Where Stripe's pages open: the whole tab, from an iframe too (a cross-origin frame
// may set the top's href, not call its assign()).
function goTop(url) {
  if (window.top === window) window.location.assign(url);
  else window.top.location.href = url;
}

// A link to Stripe's pages only when it is one (http or https).
const link = (url, text) => (/^https?:\/\//.test(url || "")
  ? `<a href="${esc(url)}" target="_blank" rel="noopener">${text}</a>` : "");

const when = (t) => (t ? esc(String(t).replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC")) : "");

function takeToken() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const t = hash.get("token");
  if (t) {
    sessionStorage.setItem(TOKEN_KEY, t);
    hash.delete("token");
    const rest = hash.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

class Billing extends HTMLElement {
  connectedCallback() {
    this.api = (this.getAttribute("api") || "").replace(/\/$/, "");
    const m = /^\/orgs\/([A-Za-z0-9_-]+)\/billing\/?$/.exec(location.pathname);
    this.org = this.getAttribute("org") || (m ? m[1] : null);
    this.token = this.token || takeToken();
    this.filters = { kind: "", member: "" };
    this.addEventListener("click", (e) => this.onClick(e));
    this.addEventListener("submit", (e) => this.onSubmit(e));
    this.addEventListener("change", (e) => this.onChange(e));
    // A new token in the address (another user, or a refreshed one): use it.
    window.addEventListener("hashchange", () => {
      if (!new URLSearchParams(location.hash.slice(1)).get("token")) return;
      this.token = takeToken();
      if (this.org) this.load(); else this.renderCreate();
    });
    if (!this.token) {
      this.innerHTML = `<p class="error" role="alert">Sign in first: this page needs your dashboard token.</p>`;
      return;
    }
    if (!this.org) { this.renderCreate(); return; }
    this.load();
  }

  async call(method, path, body) {
    const res = await fetch(this.api + path, {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    return { status: res.status, ok: res.ok, data };
  }

  message(r) {
    if (r.status === 401) return "Your session has expired: sign in again.";
    const e = r.data && r.data.error;
    return e ? e.message : `The API answered ${r.status}.`;
  }

  async load() {
    const o = `/v1/orgs/${this.org}`;
    const org = await this.call("GET", o);
    if (!org.ok) {
      this.innerHTML = `<h1>Billing</h1><p class="error" role="alert">${esc(
        org.status === 403 ? `You are not a member of ${this.org}.` : this.message(org))}</p>`;
      return;
    }
    this.profile = org.data.org;
    this.memberRole = org.data.role;
    const q = this.historyQuery();
    q.set("limit", "25");
    const [balance, offers, recharge, usage, history, notes, keys, agents, settings, daily, withdrawals, plans,
      invoices] = await Promise.all([
      this.call("GET", `${o}/balance`),
      this.call("GET", `${o}/checkout`),
      this.call("GET", `${o}/auto-recharge`),
      this.call("GET", `${o}/usage`),
      this.call("GET", `${o}/history?${q}`),
      this.call("GET", `${o}/notifications`),
      this.at("admin") ? this.call("GET", `${o}/keys`) : null,
      this.call("GET", `${o}/agents`),
      this.call("GET", `${o}/settings`),
      this.call("GET", `${o}/usage/daily`),
      this.call("GET", `${o}/withdrawals`),
      this.call("GET", `${o}/plans`),
      this.at("owner") ? this.call("GET", `${o}/invoices`) : null,
    ]);
    Object.assign(this, { balance, offers, recharge, usage, history, notes, keys, agents, settings, daily, withdrawals,
      plans, invoices });
    // One id per withdrawal asked: a second click of the same form asks the same thing.
    this.withdrawalId = `wd_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    this.entries = history.ok ? history.data.entries : [];
    this.next = history.ok ? history.data.next : null;
    this.render();
    this.afterCheckout();
  }

  at(role) { return RANK[this.memberRole] >= RANK[role]; }

  render() {
    const p = this.profile;
    const billing = this.balance.ok;
    this.innerHTML = `
      <header class="top">
        <h1>Billing <span class="org">${esc(p.name)} <small>(${esc(p.id)})</small></span></h1>
        <p class="meta">You are <strong data-role>${esc(this.memberRole)}</strong> ·
          billing: <strong>${esc(p.billing_mode)}</strong> · runtime: ${esc(p.runtime)}</p>
      </header>
      <div class="notice" role="status" aria-live="polite" data-notice>${this.notice || ""}</div>
      ${billing ? this.cardHtml()
                : `<section class="card"><h2>Prepaid credits</h2>${this.balance.status === 403
                   ? `<p class="muted" data-hidden-billing>Your org's owners have not shared billing with members.</p>`
                   : `<p class="error" role="alert">${esc(this.message(this.balance))}</p>`}</section>`}
      ${billing ? this.plansHtml() : ""}
      ${this.buyHtml()}
      ${billing ? this.rechargeHtml() : ""}
      ${this.invoicesHtml()}
      ${billing ? this.withdrawalsHtml() : ""}
      ${billing ? this.usageHtml() + this.historyHtml() : ""}
      ${this.notesHtml()}
      ${this.settingsHtml()}`;
  }

  cardHtml() {
    const b = this.balance.data;
    const badge = b.exhausted ? `<span class="badge out" data-badge>Out of credits</span>`
      : b.low_balance ? `<span class="badge low" data-badge>Low balance</span>` : "";
    const rows = (b.recent || []).map((e) => `<tr><td>${esc(e.kind)}</td>
      <td class="num">${amount(e.amount)}</td><td class="num">${usd(e.balance_after)}</td>
      <td>${esc(e.member || "")}</td><td>${when(e.created_at)}</td></tr>`).join("");
    const out = b.exhausted && this.profile.billing_mode === "credits" ? `<div class="out-card" data-exhausted role="alert">
        <h3>Out of credits</h3>
        <p>Your agents are paused until credits are added. ${
          this.offers.ok
            ? "Buy credits below, or turn on auto top-up so this does not happen again."
            : "Ask an owner of this org to buy credits or turn on auto top-up."}</p></div>` : "";
    return `<section class="card" aria-labelledby="credits-h">
      <h2 id="credits-h">Prepaid credits ${badge}</h2>
      ${out}
      <p class="balance"><span data-balance>${usd(b.balance)}</span>
        <span class="credits" data-credits>${credits(b.credits)} credits</span></p>
      <p class="muted">${esc(b.credits_per_usd)} credits = $1 · available ${usd(b.available)}
        · held ${usd(b.held)} · low below ${usd(b.low_balance_threshold)}</p>
      <dl class="grid">
        <div><dt>Base</dt><dd>${usd(b.buckets.base)}</dd></div>
        <div><dt>Rollover</dt><dd>${usd(b.buckets.rollover)}</dd></div>
        <div><dt>Purchased</dt><dd>${usd(b.buckets.purchased)}</dd></div>
        ${b.buckets.expiring && b.buckets.expiring !== "0.00" ? `<div><dt>Expiring</dt><dd data-expiring>${usd(b.buckets.expiring)}${
          b.next_expiry ? ` <small>(${usd(b.next_expiry.amount)} on ${when(b.next_expiry.expires_at)})</small>` : ""}</dd></div>` : ""}
        <div><dt>Earned</dt><dd data-earned>${usd(b.buckets.earned || "0")}</dd></div>
        <div><dt>Withdrawable</dt><dd data-withdrawable>${usd(b.withdrawable || "0")}</dd></div>
        <div><dt>Lifetime added</dt><dd data-added>${usd(b.lifetime_added)}</dd></div>
        ${b.lifetime_granted && b.lifetime_granted !== "0.00" ? `<div><dt>Granted</dt><dd data-granted>${usd(b.lifetime_granted)}</dd></div>` : ""}
        <div><dt>Lifetime spent</dt><dd>${usd(b.lifetime_spent)}</dd></div>
        <div><dt>Used this month</dt><dd data-month>${usd(this.monthTotal())}</dd></div>
      </dl>
      <h3>Recent transactions</h3>
      <table><thead><tr><th>Kind</th><th class="num">Amount</th><th class="num">Balance</th>
        <th>Member</th><th>When</th></tr></thead><tbody data-recent>${rows ||
        `<tr><td colspan="5" class="muted">No transactions yet.</td></tr>`}</tbody></table>
    </section>`;
  }

  withdrawalsHtml() {
    const w = this.withdrawals;
    if (!w || !w.ok) return "";
    const d = w.data;
    const rows = (d.withdrawals || []).map((x) => `<tr><td>${esc(x.id)}</td>
      <td class="num">${usd(x.amount)}</td><td data-state>${esc(x.state)}</td>
      <td>${esc(x.reference || x.reason || "")}</td><td>${when(x.requested_at)}</td></tr>`).join("");
    const owner = this.at("owner");
    return `<section class="card" aria-labelledby="withdraw-h"><h2 id="withdraw-h">Earned credits</h2>
      <p>Referral rewards and creator earnings: <strong data-w-earned>${usd(d.earned)}</strong> earned,
        <strong data-w-withdrawable>${usd(d.withdrawable)}</strong> withdrawable now. They are spent last.</p>
      ${owner ? `<form data-form="withdraw" class="row">
        <label>Withdraw (USD) <input name="amount" inputmode="decimal" required pattern="\\d+(\\.\\d{1,2})?"
          placeholder="${esc(d.minimum_usd)}" aria-describedby="withdraw-help"></label>
        <button type="submit">Withdraw</button></form>
      <p id="withdraw-help" class="muted">At least ${usd(d.minimum_usd)}. The credits leave the wallet now; an
        operator pays them out and the list below shows when.</p>`
        : `<p class="muted">Owners withdraw earned credits.</p>`}
      <p class="error" role="alert" data-error="withdraw"></p>
      ${rows ? `<table><thead><tr><th>Withdrawal</th><th class="num">Amount</th><th>State</th>
        <th>Reference</th><th>Asked</th></tr></thead><tbody data-withdrawals>${rows}</tbody></table>` : ""}
    </section>`;
  }

  plansHtml() {
    const p = this.plans;
    if (!p) return "";
    if (!p.ok) {
      return p.status === 403 ? "" : `<section class="card"><h2>Plan</h2>
        <p class="error" role="alert" data-error="plan">${esc(this.message(p))}</p></section>`;
    }
    if (!(p.data.plans || []).length) return "";
    const d = p.data;
    const sub = d.subscription;
    const current = sub && d.plans.find((x) => x.plan === sub.plan);
    const every = (x) => (x.interval === "year" ? "a year" : "a month");
    // A plan can be switched to by the owner who pays the subscription, within its interval.
    const switchable = (x) => d.payer && !sub.cancel_at_period_end && current && current.interval === x.interval;
    const rows = d.plans.map((x) => {
      const mine = sub && sub.plan === x.plan;
      const action = !d.can_change || mine ? ""
        : sub ? (switchable(x) ? `<button type="button" data-change-plan="${esc(x.plan)}">Switch to ${esc(x.name)}</button>` : "")
          : `<button type="button" data-subscribe="${esc(x.plan)}" aria-label="Subscribe to ${esc(x.name)}">Subscribe</button>`;
      return `<tr data-plan="${esc(x.plan)}"${mine ? " data-current" : ""}><td><strong>${esc(x.name)}</strong>${
        mine ? " <span class=\"badge\">current</span>" : ""}</td>
        <td class="num">${usd(x.amount_usd)} ${every(x)}</td>
        <td class="num">${usd(x.base_usd)} <small>(${credits(x.base_credits)} credits) a month</small></td>
        <td class="num">${usd(x.rollover_cap_usd)}</td><td>${action}</td></tr>`;
    }).join("");
    const status = sub ? `<p data-subscription>Your plan: <strong>${esc(current ? current.name : sub.plan)}</strong>
        (${esc(sub.status)}${sub.cancel_at_period_end ? `, ends ${when(sub.current_period_end)}`
          : sub.current_period_end ? `, renews ${when(sub.current_period_end)}` : ""}).
        ${d.can_change && !sub.cancel_at_period_end ? `<button type="button" data-cancel-plan>Cancel at period end</button>` : ""}</p>`
      : `<p class="muted" data-no-subscription>No plan: credits are bought as needed.</p>`;
    return `<section class="card" aria-labelledby="plans-h"><h2 id="plans-h">Plan</h2>
      ${status}
      <table><thead><tr><th>Plan</th><th class="num">Price</th><th class="num">Base credits</th>
        <th class="num">Rollover cap</th><th>Action</th></tr></thead><tbody>${rows}</tbody></table>
      <p class="muted">Base credits come each month (annual plans too) and are spent first; unused base rolls over
        up to the cap. An upgrade applies now, its price and credits prorated for the rest of the month; a
        downgrade applies from the next period.${!d.can_change ? " Owners change the plan."
          : sub && !d.payer ? " The owner who pays the plan changes it." : ""}</p>
      <p class="error" role="alert" data-error="plan"></p>
    </section>`;
  }

  invoicesHtml() {
    const v = this.invoices;
    if (!v || !v.ok) return "";
    const rows = (v.data.invoices || []).map((i) => `<tr data-invoice="${esc(i.id)}">
      <td>${esc(i.number || i.id)}</td><td>${when(i.created)}</td><td>${esc(i.description || i.billing_reason || "")}</td>
      <td class="num">${i.total_usd ? usd(i.total_usd) : esc(i.currency)}</td><td>${esc(i.status)}</td>
      <td>${link(i.hosted_invoice_url, "View")} ${link(i.invoice_pdf, "PDF")}</td></tr>`).join("");
    return `<section class="card" aria-labelledby="invoices-h"><h2 id="invoices-h">Invoices</h2>
      <p><button type="button" data-portal>Open the Stripe billing portal</button>
        <span class="muted">your payment methods and invoices</span></p>
      <p class="error" role="alert" data-error="invoices"></p>
      ${rows ? `<table><thead><tr><th>Invoice</th><th>Date</th><th>For</th><th class="num">Total</th><th>Status</th>
        <th>Links</th></tr></thead><tbody data-invoices>${rows}</tbody></table>`
        : `<p class="muted" data-no-invoices>No invoices yet.</p>`}
    </section>`;
  }

  async goTo(which, method, path, body) {
    this.error(which, "");
    const r = await this.call(method, path, body);
    if (!r.ok) { this.error(which, this.message(r)); return; }
    if (!r.data.url) { this.error(which, "Stripe gave no page to go to; try again."); return; }
    goTop(r.data.url);
  }

  monthTotal() {
    if (this.daily && this.daily.ok) return this.daily.data.total.billed;
    if (!this.usage.ok) return "0";
    let total = [0n, 0];
    for (const m of this.usage.data.members || []) total = addDec(total, dec(m.spent) || [0n, 0]);
    return decText(total);
  }

  buyHtml() {
    const mode = this.profile.billing_mode;
    if (mode !== "credits") {
      return `<section class="card"><h2>Buy credits</h2><p class="muted" data-not-credits>
        This org ${mode === "byok" ? "pays its provider with its own key" : "has not chosen how to pay yet"},
        so its wallet is not used. ${this.at("admin")
          ? "To buy credits, switch it to credits in the settings below."
          : "An owner or admin can switch it to credits."}</p></section>`;
    }
    const o = this.offers.data;
    if (!this.offers.ok) {
      if (this.offers.status !== 403) return "";
      return `<section class="card"><h2>Buy credits</h2><p class="muted" data-no-purchase>
        Only ${this.profile.purchase_policy === "owners_only" ? "owners" : "members"} of this org can buy credits.</p></section>`;
    }
    const packs = (o.packages || []).map((p) => `<li class="pack">
      <strong>${esc(p.name)}</strong> <span>${usd(p.price)}</span>
      <span class="muted">${usd(p.credits)} of credits (${creditsOf(p.credits, o.credits_per_usd)} credits)</span>
      <button type="button" data-package="${esc(p.id)}">Buy ${esc(p.name)}</button></li>`).join("");
    return `<section class="card" aria-labelledby="buy-h"><h2 id="buy-h">Buy credits</h2>
      <p><button type="button" class="primary" data-bulk>Buy ${usd(o.bulk_usd)} credits</button>
        <span class="muted">${creditsOf(o.bulk_usd, o.credits_per_usd)} credits</span></p>
      ${packs ? `<ul class="packs">${packs}</ul>` : ""}
      <form data-form="custom" class="row">
        <label>Custom amount (USD)
          <input name="amount" inputmode="decimal" required pattern="\\d+(\\.\\d{1,2})?"
            placeholder="${esc(o.custom_min_usd)}" aria-describedby="custom-help"></label>
        <button type="submit">Purchase credits</button>
      </form>
      <p id="custom-help" class="muted">Between ${usd(o.custom_min_usd)} and ${usd(o.custom_max_usd)}.
        You pay on Stripe's page and come back here.</p>
      <p class="error" role="alert" data-error="buy"></p>
    </section>`;
  }

  rechargeHtml() {
    if (!this.recharge.ok || this.profile.billing_mode !== "credits") return "";
    const r = this.recharge.data;
    const edit = this.at("admin");
    const dis = edit ? "" : "disabled";
    const failed = (this.notes.ok ? this.notes.data.notifications : [])
      .find((n) => n.kind === "credit_purchase_failed" && !n.read);
    const state = r.suspended
      ? `<p class="error" data-suspended>Auto top-up is paused: ${r.suspended === "card_owner_left"
          ? "the card's owner left the org" : `the last charge failed (${esc(r.suspended)})`}.
          Save the settings again with a working card to resume.</p>`
      : failed ? `<p class="warn" data-failed>A top-up charge failed on ${when(failed.created_at)}: ${esc(failed.reason || "unknown reason")}.</p>` : "";
    return `<section class="card" aria-labelledby="ar-h"><h2 id="ar-h">Auto top-up</h2>
      <p>${r.enabled ? `<strong data-ar-state>On</strong>: when the balance falls to ${usd(r.threshold_usd)},
        ${r.target_usd ? `<span data-ar-target>it is brought back to ${usd(r.target_usd)}</span>, charged` : `${usd(r.amount_usd)} is charged`}
        to ${r.payment_method ? `the saved card${r.card_owner ? ` of ${esc(r.card_owner)}` : ""}` : "no card"}.`
        : `<strong data-ar-state>Off</strong>.`} At most ${esc(r.max_per_day)} top-ups and ${usd(r.max_usd_per_day)} a day.</p>
      ${state}
      <form data-form="recharge" class="grid-form">
        <label><input type="checkbox" name="enabled" ${r.enabled ? "checked" : ""} ${dis}> Auto top-up on</label>
        <label>When the balance is at or below (USD)
          <input name="threshold" value="${esc(r.threshold_usd)}" inputmode="decimal" ${dis}></label>
        <label>Top up by (USD) <input name="amount" value="${esc(r.amount_usd)}" inputmode="decimal" ${dis}></label>
        <label>Or bring the balance back to (USD)
          <input name="target_usd" value="${esc(r.target_usd || "")}" placeholder="empty: top up by the amount" inputmode="decimal" ${dis}></label>
        <p class="muted">With a target, the amount still bounds the threshold and counts against the day's cap.</p>
        <label>At most per day <input name="max_per_day" value="${esc(r.max_per_day)}" inputmode="numeric" ${dis}></label>
        <label>USD per day at most <input name="max_usd" value="${esc(r.max_usd_per_day)}" inputmode="decimal" ${dis}></label>
        ${edit ? `<button type="submit">Save auto top-up</button>` : `<p class="muted">Owners and admins change these.</p>`}
        <p class="error" role="alert" data-error="recharge"></p>
      </form></section>`;
  }

  usageHtml() {
    if (!this.usage.ok) return "";
    const owner = this.at("owner");
    const rows = (this.usage.data.members || []).map((m) => `<tr>
      <td>${esc(m.member)}</td><td>${esc(m.role)}</td><td class="num">${usd(m.spent)}</td>
      <td>${owner ? `<form data-form="limit" data-member="${esc(m.member)}" class="inline">
          <input name="limit" value="${esc(m.monthly_limit || "")}" placeholder="no limit"
            aria-label="Monthly limit for ${esc(m.member)} (USD)" inputmode="decimal">
          <button type="submit">Set</button></form>`
        : m.monthly_limit ? usd(m.monthly_limit) : "no limit"}</td></tr>`).join("");
    return `<section class="card" aria-labelledby="usage-h"><h2 id="usage-h">Usage this month (${esc(this.usage.data.month)})</h2>
      <table><thead><tr><th>Member</th><th>Role</th><th class="num">Spent</th><th>Monthly limit</th></tr></thead>
      <tbody data-usage>${rows}</tbody></table><p class="error" role="alert" data-error="limit"></p>
      ${this.chartHtml()}</section>`;
  }

  // Usage by day as bars: heights from the exact decimals, scaled to the largest day.
  chartHtml() {
    if (!this.daily || !this.daily.ok) return "";
    const d = this.daily.data;
    const size = (v) => { const [n, scale] = dec(v) || [0n, 0]; return Number(n) / 10 ** scale; };
    const max = Math.max(...d.days.map((x) => size(x.billed) + size(x.unbilled)), 0);
    const w = 8, gap = 2, h = 80;
    const bars = d.days.map((x, i) => {
      const v = size(x.billed) + size(x.unbilled);
      const bh = max > 0 ? Math.max(v > 0 ? 1 : 0, Math.round((v / max) * h)) : 0;
      return `<rect x="${i * (w + gap)}" y="${h - bh}" width="${w}" height="${bh}" data-day="${esc(x.day)}"><title>${esc(x.day)}: ${usd(x.billed)}${
        dec(x.unbilled) && x.unbilled !== "0.00" ? ` + ${usd(x.unbilled)} on your own key` : ""} · ${esc(x.calls)} calls</title></rect>`;
    }).join("");
    const by = (rows) => rows.slice(0, 5).map((r) => `<li>${esc(r.id)}: ${usd(r.billed)}</li>`).join("");
    return `<h3>By day</h3>
      <svg class="chart" data-chart role="img" viewBox="0 0 ${Math.max(d.days.length * (w + gap), 1)} ${h}"
        aria-label="Usage by day from ${esc(d.from)} to ${esc(d.to)}: ${usd(d.total.billed)} in ${esc(d.total.calls)} calls">${bars}</svg>
      <div class="grid by"><div><h4>By model</h4><ul data-by-model>${by(d.by_model)}</ul></div>
        <div><h4>By API key</h4><ul data-by-key>${by(d.by_api_key)}</ul></div></div>`;
  }

  historyHtml() {
    const h = this.history;
    const rows = h.ok ? this.entries.map((e) => `<tr><td>${when(e.created_at)}</td><td>${esc(e.kind)}</td>
      <td class="num">${amount(e.amount)}</td><td class="num">${usd(e.balance_after)}</td>
      <td>${esc(e.member || "")}</td><td>${esc(e.api_key || "")}</td><td>${esc(e.agent || "")}</td></tr>`).join("") : "";
    const opts = KINDS.map((k) => `<option value="${k}" ${this.filters.kind === k ? "selected" : ""}>${k}</option>`).join("");
    return `<section class="card" aria-labelledby="hist-h"><h2 id="hist-h">History</h2>
      <form data-form="filter" class="row">
        <label>Kind <select name="kind"><option value="">all</option>${opts}</select></label>
        <label>Member <input name="member" value="${esc(this.filters.member)}"></label>
        <button type="submit">Filter</button>
        <button type="button" data-csv>Download CSV</button>
      </form>
      ${h.ok ? "" : `<p class="error" role="alert">${esc(this.message(h))}</p>`}
      <table><thead><tr><th>When</th><th>Kind</th><th class="num">Amount</th><th class="num">Balance</th>
        <th>Member</th><th>API key</th><th>Agent</th></tr></thead><tbody data-history>${rows ||
        `<tr><td colspan="7" class="muted">${this.next ? "None on this page." : "Nothing here."}</td></tr>`}</tbody></table>
      ${this.next ? `<button type="button" data-more>Load more</button>` : ""}</section>`;
  }

  notesHtml() {
    if (!this.notes.ok) return "";
    const list = this.notes.data.notifications;
    const unread = list.filter((n) => !n.read).length;
    const items = list.map((n) => `<li class="${n.read ? "read" : "unread"}">${esc(n.kind.replaceAll("_", " "))}
      · ${usd(n.available)} available${n.reason ? ` · ${esc(n.reason)}` : ""} · ${when(n.created_at)}</li>`).join("");
    return `<section class="card" aria-labelledby="notes-h"><h2 id="notes-h">Notifications
      <span class="count" data-unread>${unread} unread</span></h2>
      ${unread ? `<button type="button" data-mark-read>Mark all read</button>` : ""}
      <ul class="notes">${items || `<li class="muted">None.</li>`}</ul></section>`;
  }

  settingsHtml() {
    const admin = this.at("admin");
    const agents = this.agents.ok ? this.agents.data.agents.map((a) => `<li>${esc(a.agent)}: ${esc(a.runtime)}
      <span class="muted">(set by ${esc(a.updated_by)})</span></li>`).join("") : "";
    const runtimeOpts = RUNTIMES.map(([id, name]) => `<option value="${id}">${name}</option>`).join("");
    const keys = this.keys && this.keys.ok ? this.keys.data.keys.map((k) => `<li data-key="${esc(k.provider)}">
      <strong>${esc(k.provider)}</strong> ····${esc(k.last4)}
      <span class="muted">${k.rotated_at ? `rotated ${when(k.rotated_at)}` : `added ${when(k.created_at)}`}</span>
      <form data-form="rotate" data-provider="${esc(k.provider)}" class="inline">
        <input name="key" type="password" autocomplete="off" aria-label="New ${esc(k.provider)} key">
        <button type="submit">Rotate</button></form>
      <button type="button" data-delete-key="${esc(k.provider)}">Delete</button></li>`).join("") : "";
    const provOpts = PROVIDERS.map((p) => `<option value="${p}">${p}</option>`).join("");
    return `<section class="card" aria-labelledby="set-h"><h2 id="set-h">Keys and settings</h2>
      ${admin ? `<form data-form="mode" class="row"><label>Billing mode
        <select name="mode">${["credits", "byok", "deferred"].map((m) =>
          `<option value="${m}" ${this.profile.billing_mode === m ? "selected" : ""}>${m}</option>`).join("")}</select></label>
        <button type="submit">Change billing mode</button></form>
      <h3>Provider keys (BYOK)</h3>
      <ul class="keys">${keys || `<li class="muted">No keys.</li>`}</ul>
      <form data-form="add-key" class="row"><label>Provider <select name="provider">${provOpts}</select></label>
        <label>Key <input name="key" type="password" autocomplete="off"></label><button type="submit">Add key</button></form>
      <p class="error" role="alert" data-error="keys"></p>` : `<p class="muted">Owners and admins manage keys and the billing mode.</p>`}
      ${this.orgSettingsHtml()}
      <h3>Runtime per agent</h3>
      <p>The org's runtime: ${esc(this.profile.runtime)}.</p>
      <ul>${agents || `<li class="muted">No agent has its own runtime.</li>`}</ul>
      ${admin ? `<form data-form="agent" class="row"><label>Agent <input name="agent" required></label>
        <label>Runtime <select name="runtime">${runtimeOpts}</select></label><button type="submit">Set runtime</button></form>
        <p class="error" role="alert" data-error="agent"></p>` : ""}
    </section>`;
  }

  orgSettingsHtml() {
    if (!this.settings || !this.settings.ok) return "";
    const s = this.settings.data;
    const owner = this.at("owner");
    const dis = owner ? "" : "disabled";
    const policies = [["owners_only", "Owners"], ["owners_and_admins", "Owners and admins"],
      ["any_member", "Any member, with their own card"]];
    const changes = s.changes.slice(0, 10).map((c) => `<li>${esc(c.setting.replaceAll("_", " "))}:
      ${esc(c.from ?? "default")} → ${esc(c.to ?? "default")} <span class="muted">by ${esc(c.by)},
      ${when(c.at)}</span></li>`).join("");
    return `<h3>Org settings</h3>
      <form data-form="org-settings" class="grid-form">
        <label>Who may buy credits <select name="purchase_policy" ${dis}>${policies.map(([v, l]) =>
          `<option value="${v}" ${s.purchase_policy === v ? "selected" : ""}>${l}</option>`).join("")}</select></label>
        <label><input type="checkbox" name="members_see_billing" ${s.members_see_billing ? "checked" : ""} ${dis}>
          Members see billing</label>
        <label>Low-balance alert below (USD) <input name="low" inputmode="decimal"
          value="${s.low_balance_threshold_is_default ? "" : esc(s.low_balance_threshold_usd)}"
          placeholder="${esc(s.low_balance_threshold_usd)} (default)" ${dis}></label>
        ${owner ? `<button type="submit">Save settings</button>` : `<p class="muted">Owners change these.</p>`}
        <p class="error" role="alert" data-error="settings"></p>
      </form>
      <p class="muted">Markup: ${esc(s.markup ?? "the deployment's default")}.</p>
      <ul class="changes" data-changes>${changes || `<li class="muted">No changes yet.</li>`}</ul>`;
  }

  renderCreate(done) {
    const opts = RUNTIMES.map(([id, name]) => `<option value="${id}">${name}</option>`).join("");
    this.innerHTML = `<h1>Create an organization</h1>
      <form data-form="create" class="card grid-form">
        <label>Org id <input name="id" required pattern="[A-Za-z0-9_-]{1,64}"></label>
        <label>Name <input name="name" required></label>
        <label>Agent runtime <select name="runtime">${opts}</select></label>
        <fieldset><legend>How will you pay for model calls?</legend>
          <label><input type="radio" name="billing" value="credits" checked> Prepaid credits (recommended)</label>
          <label><input type="radio" name="billing" value="byok"> Bring your own provider key</label>
          <label><input type="radio" name="billing" value="deferred"> Decide later</label>
        </fieldset>
        <label data-key-field hidden>Provider key <input name="key" type="password" autocomplete="off"></label>
        <button type="submit" class="primary">Create</button>
        <p class="error" role="alert" data-error="create"></p>
      </form><div role="status" data-created>${done || ""}</div>`;
  }

  error(which, text) {
    const el = this.querySelector(`[data-error="${which}"]`);
    if (el) el.textContent = text || "";
  }

  async checkout(choice) {
    this.error("buy", "");
    const r = await this.call("POST", `/v1/orgs/${this.org}/checkout`, choice);
    if (!r.ok) { this.error("buy", this.message(r)); return; }
    if (!r.data.url) { this.error("buy", "Stripe gave no payment page for this session; try again."); return; }
    goTop(r.data.url);
  }

  async afterCheckout() {
    const q = new URLSearchParams(location.search);
    const subscribed = q.get("subscription");
    if (subscribed) {
      history.replaceState(null, "", location.pathname + location.hash);
      if (subscribed !== "success") { this.say("Subscribing was cancelled; nothing was charged."); return; }
      // Stripe's events may come after the redirect: the plan shows once they have.
      const shown = (p) => p && p.ok && p.data.subscription;
      if (shown(this.plans)) { this.say("Subscribed."); return; }
      this.say("Subscribed. Waiting for Stripe to confirm it…");
      for (let i = 0; i < 30; i++) {
        await new Promise((res) => setTimeout(res, 1000));
        const p = await this.call("GET", `/v1/orgs/${this.org}/plans`);
        if (shown(p)) {
          this.notice = "Subscribed. The plan's base credits are added with its first invoice.";
          await this.load();
          return;
        }
      }
      this.say("Stripe has not confirmed the subscription yet; the plan shows when it does.");
      return;
    }
    const state = q.get("checkout");
    if (!state) return;
    history.replaceState(null, "", location.pathname + location.hash);
    if (state !== "success") { this.say("The purchase was cancelled; nothing was charged."); return; }
    const session = q.get("session");
    const credited = (entries) => entries.some((e) => e.external && e.external.checkout_session === session);
    if (this.balance.ok && credited(this.entries || [])) {
      // Already in what the page just read: no second render under the user's hands.
      this.say(`Purchase credited: your balance is ${usd(this.balance.data.balance)}.`);
      return;
    }
    this.say("Payment received. Waiting for Stripe to confirm it…");
    for (let i = 0; i < 30; i++) {
      const h = await this.call("GET", `/v1/orgs/${this.org}/history?kind=purchase&limit=20`);
      if (h.status === 403) {
        // A buyer who may not see billing: nothing to watch.
        this.say("Payment received. The org's credits are added when Stripe confirms it.");
        return;
      }
      if (h.ok && credited(h.data.entries)) {
        const b = await this.call("GET", `/v1/orgs/${this.org}/balance`);
        this.notice = b.ok ? `Purchase credited: your balance is ${usd(b.data.balance)}.` : "Purchase credited.";
        await this.load();
        return;
      }
      await new Promise((res) => setTimeout(res, 1000));
    }
    this.say("Stripe has not confirmed the payment yet; the balance updates when it does.");
  }

  say(text) {
    this.notice = esc(text);
    const el = this.querySelector("[data-notice]");
    if (el) el.innerHTML = this.notice;
  }

  async onClick(e) {
    const t = e.target.closest("button");
    if (!t) return;
    const o = `/v1/orgs/${this.org}`;
    if (t.dataset.subscribe) await this.goTo("plan", "POST", `${o}/subscription`, { plan: t.dataset.subscribe });
    else if (t.hasAttribute("data-portal")) await this.goTo("invoices", "POST", `${o}/portal`);
    else if (t.dataset.changePlan) {
      this.error("plan", "");
      const r = await this.call("PUT", `${o}/subscription`, { plan: t.dataset.changePlan });
      if (!r.ok) { this.error("plan", this.message(r)); return; }
      this.notice = r.data.applies === "now"
        ? "Plan upgraded: the difference is charged and its base credits added for the rest of the month."
        : "Plan changed: it applies from the next period.";
      await this.load();
    } else if (t.hasAttribute("data-cancel-plan")) {
      this.error("plan", "");
      const r = await this.call("DELETE", `${o}/subscription`);
      if (!r.ok) { this.error("plan", this.message(r)); return; }
      this.notice = `Plan cancelled: it ends ${when(r.data.current_period_end)}; its credits stand until then.`;
      await this.load();
    } else if (t.hasAttribute("data-bulk")) await this.checkout({ bulk: { quantity: 1 } });
    else if (t.dataset.package) await this.checkout({ package: { id: t.dataset.package } });
    else if (t.hasAttribute("data-mark-read")) {
      const ids = this.notes.data.notifications.filter((n) => !n.read).map((n) => n.id);
      await this.call("POST", `${o}/notifications/read`, { ids });
      await this.load();
    } else if (t.dataset.deleteKey) {
      const r = await this.call("DELETE", `${o}/keys/${t.dataset.deleteKey}`);
      if (r.ok) { await this.load(); return; }
      const err = r.data && r.data.error;
      this.error("keys", err && err.code === "key_in_use"
        ? `This key is in use: the ${err.runtime || "org's"} runtime calls ${err.provider || "this provider"} with it while the org brings its own keys. Switch that runtime or the billing mode first, then delete it.`
        : this.message(r));
    } else if (t.hasAttribute("data-csv")) await this.downloadCsv();
    else if (t.hasAttribute("data-more")) await this.moreHistory();
  }

  historyQuery() {
    const q = new URLSearchParams();
    if (this.filters.kind) q.set("kind", this.filters.kind);
    if (this.filters.member) q.set("member", this.filters.member);
    return q;
  }

  async moreHistory() {
    const q = this.historyQuery();
    q.set("limit", "25");
    q.set("cursor", this.next);
    const r = await this.call("GET", `/v1/orgs/${this.org}/history?${q}`);
    if (!r.ok) { this.say(this.message(r)); return; }
    this.entries = this.entries.concat(r.data.entries);
    this.next = r.data.next;
    this.render();
  }

  async downloadCsv() {
    const q = this.historyQuery();
    const res = await fetch(`${this.api}/v1/orgs/${this.org}/history.csv?${q}`,
      { headers: { authorization: `Bearer ${this.token}` } });
    if (!res.ok) { this.say(`The CSV could not be made (${res.status}).`); return; }
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `${this.org}-history.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  onChange(e) {
    if (e.target.name === "billing") {
      const field = this.querySelector("[data-key-field]");
      if (field) field.hidden = e.target.value !== "byok";
    }
  }

  async onSubmit(e) {
    const form = e.target.closest("form");
    if (!form) return;
    e.preventDefault();
    // The last action's notice goes: the next one says what this one did.
    this.say("");
    const f = Object.fromEntries(new FormData(form));
    const o = `/v1/orgs/${this.org}`;
    switch (form.dataset.form) {
      case "custom": return this.checkout({ custom: { amount: f.amount.trim() } });
      case "recharge": {
        this.error("recharge", "");
        const body = { enabled: !!f.enabled, threshold_usd: f.threshold.trim(), amount_usd: f.amount.trim() };
        if (f.max_per_day) body.max_per_day = Number.parseInt(f.max_per_day, 10);
        if (f.max_usd) body.max_usd_per_day = f.max_usd.trim();
        body.target_usd = (f.target_usd || "").trim() === "" ? null : f.target_usd.trim();
        const r = await this.call("PUT", `${o}/auto-recharge`, body);
        if (!r.ok) { this.error("recharge", this.message(r)); return; }
        this.notice = "Auto top-up saved.";
        return this.load();
      }
      case "limit": {
        const v = f.limit.trim();
        const r = await this.call("PUT", `${o}/members/${form.dataset.member}/limit`,
          { monthly_limit_usd: v === "" ? null : v });
        if (!r.ok) { this.error("limit", this.message(r)); return; }
        this.notice = `Limit saved for ${esc(form.dataset.member)}.`;
        return this.load();
      }
      case "filter":
        this.filters = { kind: f.kind, member: f.member.trim() };
        return this.load();
      case "withdraw": {
        this.error("withdraw", "");
        const r = await this.call("POST", `${o}/withdrawals`,
          { amount_usd: f.amount.trim(), request_id: this.withdrawalId });
        if (!r.ok) { this.error("withdraw", this.message(r)); return; }
        this.notice = `Withdrawal of ${usd(r.data.withdrawal.amount)} asked: it is pending until it is paid out.`;
        return this.load();
      }
      case "rotate":
      case "add-key": {
        const provider = form.dataset.provider || f.provider;
        const r = await this.call("PUT", `${o}/keys/${provider}`, { key: f.key });
        form.reset();
        if (!r.ok) { this.error("keys", this.message(r)); return; }
        this.notice = `Key saved: ····${esc(r.data.key.last4)}. It is never shown again.`;
        return this.load();
      }
      case "org-settings": {
        this.error("settings", "");
        const body = { purchase_policy: f.purchase_policy, members_see_billing: !!f.members_see_billing,
          low_balance_threshold_usd: f.low.trim() === "" ? null : f.low.trim() };
        const r = await this.call("PATCH", `${o}/settings`, body);
        if (!r.ok) { this.error("settings", this.message(r)); return; }
        this.notice = "Settings saved.";
        return this.load();
      }
      case "mode": {
        const r = await this.call("PUT", `${o}/billing-mode`, { billing_mode: f.mode });
        if (!r.ok) { this.error("keys", this.message(r)); return; }
        return this.load();
      }
      case "agent": {
        const r = await this.call("PUT", `${o}/agents/${encodeURIComponent(f.agent.trim())}`, { runtime: f.runtime });
        if (!r.ok) { this.error("agent", this.message(r)); return; }
        return this.load();
      }
      case "create": {
        this.error("create", "");
        const body = { id: f.id.trim(), name: f.name.trim(), runtime: f.runtime, billing_mode: f.billing };
        if (f.billing === "byok") {
          const provider = RUNTIMES.find(([id]) => id === f.runtime)[2];
          body.keys = { [provider]: f.key };
        }
        const r = await this.call("POST", "/v1/orgs", body);
        if (!r.ok) { this.error("create", this.message(r)); return; }
        const keys = (r.data.keys || []).map((k) => `${esc(k.provider)} key ····${esc(k.last4)}`).join(", ");
        this.renderCreate(`<p>Created <a href="/orgs/${esc(r.data.org.id)}/billing">${esc(r.data.org.name)}</a>.
          ${keys ? `Saved: ${keys}. The key is never shown again.` : ""}</p>`);
        return undefined;
      }
      default: return undefined;
    }
  }
}

customElements.define("agent-credits-billing", Billing);
