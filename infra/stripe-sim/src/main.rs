//! `stripe-sim [ADDR]`: the Stripe simulator as a server for `infra/local/up`.
//!
//! ADDR (else `STRIPE_SIM_ADDR`, else 127.0.0.1:12111) is where it listens. With
//! `STRIPE_SIM_WEBHOOK_URL` and `STRIPE_SIM_WEBHOOK_SECRET` set it delivers events there from
//! the start; otherwise configure delivery with `POST /_sim/webhooks`. `STRIPE_SIM_PRICES`
//! (a JSON object keyed by price id: `{"price_team_monthly": {"amount_usd": "50.00",
//! "interval"?: "month" | "year", "name"?: "Team"}}`) defines the account's prices.

use std::net::SocketAddr;
use std::process::ExitCode;

use stripe_sim::{StripeSim, WebhookConfig, parse_prices};

const DEFAULT_ADDR: &str = "127.0.0.1:12111";

#[tokio::main]
async fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-h" | "--help")) {
        println!("usage: stripe-sim [ADDR]   (default: $STRIPE_SIM_ADDR or {DEFAULT_ADDR})");
        println!("  STRIPE_SIM_WEBHOOK_URL, STRIPE_SIM_WEBHOOK_SECRET: deliver events there from the start");
        println!(
            "  STRIPE_SIM_PRICES: {{\"price_id\": {{\"amount_usd\": \"50.00\", \"interval\"?: \"month\"|\"year\", \"name\"?: \"...\"}}}}"
        );
        return ExitCode::SUCCESS;
    }
    let addr = arg
        .or_else(|| std::env::var("STRIPE_SIM_ADDR").ok())
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("stripe-sim: invalid address {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    // Read before listening: a mistake there stops the simulator before anyone uses it.
    let prices = match std::env::var("STRIPE_SIM_PRICES") {
        Ok(text) if !text.trim().is_empty() => match parse_prices(&text) {
            Ok(prices) => prices,
            Err(e) => {
                eprintln!("stripe-sim: STRIPE_SIM_PRICES is not usable: {e}");
                return ExitCode::from(2);
            }
        },
        _ => Vec::new(),
    };
    let sim = match StripeSim::bind(addr).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("stripe-sim: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Ok(url), Ok(secret)) = (
        std::env::var("STRIPE_SIM_WEBHOOK_URL"),
        std::env::var("STRIPE_SIM_WEBHOOK_SECRET"),
    ) {
        if let Err(e) = sim.configure_webhooks(WebhookConfig {
            url: url.clone(),
            secret,
            ..Default::default()
        }) {
            eprintln!("stripe-sim: webhook endpoint refused: {e}");
            return ExitCode::from(2);
        }
        println!("stripe-sim: delivering events to {url}");
    }
    for price in prices {
        let id = price.id.clone();
        if let Err(e) = sim.put_price(price) {
            eprintln!("stripe-sim: STRIPE_SIM_PRICES: price {id} refused: {e}");
            return ExitCode::from(2);
        }
        println!("stripe-sim: price {id}");
    }
    println!("stripe-sim: listening on {}", sim.base_url());
    match sim.serve_forever().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stripe-sim: server stopped: {e}");
            ExitCode::FAILURE
        }
    }
}
