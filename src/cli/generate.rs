//! `custval generate`: synthetic transactions from known model parameters.

use clap::Args;

use super::{date_flag, say};
use crate::error::Result;
use crate::generate::GenerateOptions;
use crate::storage::Location;

/// `custval generate --customers N --out URL ...`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Customers to draw.
    #[arg(long)]
    pub customers: u64,
    /// Output folder (local path or URL).
    #[arg(long)]
    pub out: String,
    /// Seed of the random draws: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First day of the data (YYYY-MM-DD).
    #[arg(long)]
    pub start: Option<String>,
    /// Last day of the data (YYYY-MM-DD).
    #[arg(long)]
    pub end: Option<String>,
    /// BG/NBD r: shape of the purchase-rate distribution.
    #[arg(long)]
    pub r: Option<f64>,
    /// BG/NBD alpha: scale of the purchase-rate distribution (weeks).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// BG/NBD a: dropout-probability Beta a.
    #[arg(long)]
    pub a: Option<f64>,
    /// BG/NBD b: dropout-probability Beta b.
    #[arg(long)]
    pub b: Option<f64>,
    /// Gamma-Gamma p: shape of a customer's order values.
    #[arg(long)]
    pub p: Option<f64>,
    /// Gamma-Gamma q: shape of the spend-scale distribution.
    #[arg(long)]
    pub q: Option<f64>,
    /// Gamma-Gamma v: scale of the spend-scale distribution.
    #[arg(long)]
    pub v: Option<f64>,
    /// Days over which customers make their first purchase.
    #[arg(long)]
    pub acquisition_days: Option<i64>,
    /// Also draw a latent wallet per customer (and per category), with
    /// spend a Beta-distributed share of it: a `peer_group` column (size
    /// band) in the data, the true wallets in `wallets/`, the recipe in
    /// truth.json.
    #[arg(long)]
    pub wallets: bool,
    /// With --wallets: Beta a of the firm's share of each wallet (default 2).
    #[arg(long, requires = "wallets")]
    pub wallet_share_a: Option<f64>,
    /// With --wallets: Beta b of the firm's share of each wallet (default 2).
    #[arg(long, requires = "wallets")]
    pub wallet_share_b: Option<f64>,
}

/// `custval generate`: draw, write, say where the true parameters are.
pub async fn run(args: GenerateArgs) -> Result<()> {
    let mut o = GenerateOptions {
        customers: args.customers,
        seed: args.seed,
        wallets: args.wallets.then(Default::default),
        ..Default::default()
    };
    if let Some(s) = &args.start {
        o.start = date_flag("--start", s)?;
    }
    if let Some(e) = &args.end {
        o.end = date_flag("--end", e)?;
    }
    for (slot, val) in [
        (&mut o.r, args.r),
        (&mut o.alpha, args.alpha),
        (&mut o.a, args.a),
        (&mut o.b, args.b),
        (&mut o.p, args.p),
        (&mut o.q, args.q),
        (&mut o.v, args.v),
    ] {
        if let Some(x) = val {
            *slot = x;
        }
    }
    if let Some(w) = o.wallets.as_mut() {
        for (slot, val) in [
            (&mut w.share_a, args.wallet_share_a),
            (&mut w.share_b, args.wallet_share_b),
        ] {
            if let Some(x) = val {
                *slot = x;
            }
        }
    }
    if let Some(d) = args.acquisition_days {
        o.acquisition_days = d;
    }
    let loc = Location::parse(&args.out, true)?;
    let s = crate::generate::generate(&loc, &o).await?;
    say(format_args!(
        "generated {} rows for {} customers in {} file(s); true parameters in {}\n",
        s.rows,
        s.customers,
        s.files.len(),
        s.truth
    ))?;
    if let Some(w) = &s.wallets {
        say(format_args!("true wallets in {w}\n"))?;
    }
    Ok(())
}
