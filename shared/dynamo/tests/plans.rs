//! Annual plans' monthly grants in the table: each month is granted once however many
//! ticks run at once, and a refund that ends the months to come races the ticks without
//! a month being both granted and ended, or granted without being counted in what the
//! invoice granted (which its take-back reads).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent_credits_domain::{ChangeRequest, Clock, OrgId, Usd, WalletStore, keys};
use agent_credits_dynamo::{
    DynamoWalletStore, InvoiceGrant, InvoiceRecord, MonthlyGrant, SubscriptionRecord,
};
use chrono::{Duration, TimeZone, Utc};
use futures::future::join_all;
use support::TestClock;
use support::dynoxide::Dynoxide;

struct Fixture {
    _server: Dynoxide,
    store: DynamoWalletStore,
    clock: Arc<TestClock>,
    org: OrgId,
}

async fn fixture() -> Fixture {
    let (server, client) = support::fresh_table("credits").await;
    let clock = Arc::new(TestClock::at(Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap()));
    let store = DynamoWalletStore::new(client, "credits", clock.clone());
    Fixture {
        _server: server,
        store,
        clock,
        org: OrgId::parse("org_annual").unwrap(),
    }
}

fn usd(s: &str) -> Usd {
    Usd::parse(s).unwrap()
}

impl Fixture {
    /// The year's invoice paid: its first month granted and recorded, the other eleven
    /// scheduled from today.
    async fn year(&self, invoice: &str) {
        let start = self.clock.now();
        let req = ChangeRequest::renew_plan(
            self.org.clone(),
            usd("40"),
            usd("80"),
            keys::invoice(invoice).unwrap(),
        );
        assert!(self.store.apply(req).await.unwrap().is_ok());
        self.store
            .record_invoice(&InvoiceRecord {
                invoice: invoice.to_owned(),
                grant: Some(InvoiceGrant {
                    org: self.org.clone(),
                    credits: usd("40"),
                    charged_cents: 48_000,
                    annual: true,
                }),
            })
            .await
            .unwrap();
        let months: Vec<MonthlyGrant> = (1..12)
            .map(|month| MonthlyGrant {
                org: self.org.clone(),
                invoice: invoice.to_owned(),
                month,
                due: agent_credits_domain::plans::monthly_grant_due(start, month).unwrap(),
                base: usd("40"),
                rollover_cap: usd("80"),
            })
            .collect();
        // Twice, as a redelivered `invoice.paid` does: nothing doubles.
        self.store.schedule_monthly_grants(&months).await.unwrap();
        self.store.schedule_monthly_grants(&months).await.unwrap();
    }

    /// Each month is granted (a ledger entry under its key) exactly when its marker says
    /// so: (granted, ended).
    async fn consistent(&self, invoice: &str) -> (u32, u32) {
        let markers = self.store.monthly_grants(&self.org).await.unwrap();
        assert_eq!(markers.len(), 11);
        let (mut granted, mut ended) = (0, 0);
        for (g, state) in &markers {
            let key = keys::invoice_month(invoice, g.month).unwrap();
            let entry = self.store.entry_by_key(&self.org, &key).await.unwrap();
            match state.as_str() {
                "granted" => {
                    assert!(entry.is_some(), "month {} granted without an entry", g.month);
                    granted += 1;
                }
                "ended" | "pending" => {
                    assert!(entry.is_none(), "month {} is {state} but was granted", g.month);
                    ended += u32::from(state == "ended");
                }
                other => panic!("month {} left {other}", g.month),
            }
        }
        (granted, ended)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_annual_plan_grants_each_month_once_on_its_day() {
    let f = fixture().await;
    f.year("in_year").await;
    assert_eq!(
        f.store.sweep_monthly_grants().await.unwrap().due,
        0,
        "nothing due on day one"
    );
    // Jan 31 → Feb 28, Mar 31, Apr 30: three months due 90 days later.
    f.clock.advance(Duration::days(90));
    let ticks = join_all((0..6).map(|_| f.store.sweep_monthly_grants())).await;
    let granted: usize = ticks.into_iter().map(|t| t.unwrap().granted).sum();
    assert_eq!(granted, 3, "six ticks at once grant each due month once");
    assert_eq!(f.consistent("in_year").await, (3, 0));
    let w = f.store.wallet(&f.org).await.unwrap();
    // 40, then each month 40 more with the unused base rolling over up to 80.
    assert_eq!((w.buckets.base, w.buckets.rollover), (usd("40"), usd("80")));
    assert_eq!(w.lifetime_granted, usd("160"));
    // A year later every month is granted, none twice.
    f.clock.advance(Duration::days(300));
    assert_eq!(f.store.sweep_monthly_grants().await.unwrap().granted, 8);
    assert_eq!(f.store.sweep_monthly_grants().await.unwrap().due, 0);
    assert_eq!(f.consistent("in_year").await, (11, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ending_the_months_races_the_ticks_and_each_month_is_granted_or_ended() {
    for round in 0..8 {
        let f = fixture().await;
        let invoice = format!("in_race_{round}");
        f.year(&invoice).await;
        f.clock.advance(Duration::days(30 * (round % 12) + 1));
        let (_, granted, _) = tokio::join!(
            f.store.sweep_monthly_grants(),
            f.store.end_monthly_grants(&f.org, &invoice, Default::default()),
            f.store.sweep_monthly_grants(),
        );
        // What the end answers is what was granted, and stays so.
        let granted = granted.unwrap();
        let (granted_seen, ended) = f.consistent(&invoice).await;
        assert_eq!(granted, granted_seen, "round {round}");
        assert_eq!(
            granted + ended,
            11,
            "round {round}: every month is granted or ended"
        );
        f.clock.advance(Duration::days(400));
        assert_eq!(f.store.sweep_monthly_grants().await.unwrap().granted, 0);
        assert_eq!(f.consistent(&invoice).await, (granted, ended));
        // Ending again (a second refund) answers the same and writes nothing more.
        assert_eq!(
            f.store
                .end_monthly_grants(&f.org, &invoice, Default::default())
                .await
                .unwrap(),
            granted
        );
    }
}

#[tokio::test]
async fn the_newest_subscription_stands_whatever_order_its_events_come_in() {
    let f = fixture().await;
    let at = |days: i64| f.clock.now() + Duration::days(days);
    let old = SubscriptionRecord {
        subscription: "sub_old".into(),
        customer: "cus_1".into(),
        created: at(0),
    };
    let new = SubscriptionRecord {
        subscription: "sub_new".into(),
        customer: "cus_1".into(),
        created: at(40),
    };
    assert!(f.store.record_subscription(&f.org, &new).await.unwrap());
    assert!(
        !f.store.record_subscription(&f.org, &old).await.unwrap(),
        "a late event of the old one"
    );
    assert!(
        f.store.record_subscription(&f.org, &new).await.unwrap(),
        "its own redelivery"
    );
    assert_eq!(f.store.subscription(&f.org).await.unwrap(), Some(new));
}
