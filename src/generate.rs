//! `custval generate`: synthetic transactions drawn from known BG/NBD
//! (purchases, dropout) and Gamma-Gamma (spend) parameters, deterministic for
//! a seed, streamed to Parquet in row groups, with the true parameters
//! written beside the data as `truth.json`.
//!
//! The process is the BG/NBD story of Fader, Hardie & Lee (2005), section 2:
//! lambda ~ Gamma(r, alpha), p ~ Beta(a, b); exponential inter-purchase times;
//! after each repeat purchase the customer drops out with probability p.
//! Spend per purchase is Gamma(p_gg, nu) with nu ~ Gamma(q, v) (Fader & Hardie
//! 2013). Parameters are per week.
//!
//! With `wallets` ([`WalletRecipe`]), each customer also has a latent
//! wallet and the firm's Beta-distributed share of it, which sets the order
//! values in place of the Gamma-Gamma draw; the true wallets are written to
//! `wallets/part-00000.parquet` and the recipe to `truth.json`.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::async_writer::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use object_store::buffered::BufWriter;
use object_store::{ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma, LogNormal};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::job::{epoch_day, TimeUnit};
use crate::storage::{build_store, Location};

/// What to generate.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateOptions {
    /// Customers to draw.
    pub customers: u64,
    /// Seed of the random draws.
    pub seed: u64,
    /// First day of the data.
    pub start: NaiveDate,
    /// Last day of the data.
    pub end: NaiveDate,
    /// BG/NBD parameters (weeks).
    pub r: f64,
    /// BG/NBD alpha (weeks).
    pub alpha: f64,
    /// BG/NBD a.
    pub a: f64,
    /// BG/NBD b.
    pub b: f64,
    /// Gamma-Gamma parameters.
    pub p: f64,
    /// Gamma-Gamma q.
    pub q: f64,
    /// Gamma-Gamma v.
    pub v: f64,
    /// Customers are acquired over this many days from `start`.
    pub acquisition_days: i64,
    /// Rows per Parquet file (each file is written in row groups).
    pub rows_per_file: usize,
    /// Draw a latent wallet per customer and make spend a share of it
    /// ([`WalletRecipe`]); `None` keeps the plain BG/NBD + Gamma-Gamma data.
    pub wallets: Option<WalletRecipe>,
}

/// How `generate --wallets` draws each customer's wallet (money per 365
/// days) and the spend with the firm as a share of it. Per customer:
/// a size band `g` (uniform over [`SIZE_BANDS`], written as `peer_group`),
/// a number of categories needed `k` (uniform 1..=8, a uniform random subset;
/// each order line's category is uniform over it), the need per purchase
/// occasion `need = need_scale * size(g) * sqrt(k / 4) * LogNormal(0, need_sigma)`,
/// occasions at the BG/NBD rate `lambda` (per week): the wallet is
/// `need * lambda * 365 / 7`; the firm's share `s ~ Beta(share_a, share_b)`
/// of every occasion's need, so an order's total is Gamma(p, p / (s * need))
/// (mean `s * need`) in place of the Gamma-Gamma draw, and the expected
/// spend of an active customer is `s * wallet`. A category's wallet is
/// `wallet / k` for each of the `k` categories needed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WalletRecipe {
    /// Money per occasion of a size-1 customer needing 4 categories.
    pub need_scale: f64,
    /// Log-scale spread of the need between customers alike in size,
    /// categories and rate.
    pub need_sigma: f64,
    /// Beta a of the firm's share.
    pub share_a: f64,
    /// Beta b of the firm's share.
    pub share_b: f64,
}

impl Default for WalletRecipe {
    fn default() -> Self {
        WalletRecipe {
            need_scale: 30.0,
            need_sigma: 0.25,
            share_a: 2.0,
            share_b: 2.0,
        }
    }
}

/// The size bands of `generate --wallets` (the `peer_group` column) and their
/// multipliers of the need.
pub const SIZE_BANDS: &[(&str, f64)] = &[
    ("small", 0.5),
    ("medium", 1.0),
    ("large", 2.0),
    ("enterprise", 4.0),
];

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            customers: 10_000,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default(),
            end: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap_or_default(),
            // About ten rows per customer over two years: purchases about
            // every eight weeks, one to three order lines each.
            r: 0.9,
            alpha: 7.0,
            a: 0.8,
            b: 6.0,
            p: 6.25,
            q: 3.74,
            v: 15.44,
            acquisition_days: 365,
            rows_per_file: 10_000_000,
            wallets: None,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    /// Customers drawn.
    pub customers: u64,
    /// Transaction rows written.
    pub rows: u64,
    /// URLs of the data files.
    pub files: Vec<String>,
    /// URL of `truth.json`, the parameters drawn from.
    pub truth: String,
    /// URL of the true wallets (`wallets/part-00000.parquet`), with `--wallets`.
    pub wallets: Option<String>,
}

const CATEGORIES: &[&str] = &[
    "books",
    "music",
    "video",
    "games",
    "electronics",
    "home",
    "garden",
    "toys",
];
const BATCH_ROWS: usize = 65_536;

fn schema(wallets: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("order_ts", DataType::Date32, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("margin", DataType::Float64, false),
        Field::new("category", DataType::Utf8, false),
    ];
    if wallets {
        fields.push(Field::new("peer_group", DataType::Utf8, false));
    }
    Arc::new(Schema::new(fields))
}

/// The true wallets' file: customer_id, peer_group, wallet (money per 365
/// days), share (the firm's Beta-drawn share), categories (needed),
/// category_wallet (wallet / categories, for each of them).
fn wallet_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("peer_group", DataType::Utf8, false),
        Field::new("wallet", DataType::Float64, false),
        Field::new("share", DataType::Float64, false),
        Field::new("categories", DataType::Int64, false),
        Field::new("category_wallet", DataType::Float64, false),
    ]))
}

impl GenerateOptions {
    fn validate(&self) -> Result<()> {
        let positive = [
            ("r", self.r),
            ("alpha", self.alpha),
            ("a", self.a),
            ("b", self.b),
            ("p", self.p),
            ("q", self.q),
            ("v", self.v),
        ];
        for (n, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Argument(format!(
                    "--{n} must be a positive number, got {v}"
                )));
            }
        }
        if self.end <= self.start {
            return Err(Error::Argument(format!(
                "--end {} must be after --start {}",
                self.end, self.start
            )));
        }
        if self.customers == 0 {
            return Err(Error::Argument("--customers must be at least 1".into()));
        }
        Ok(())
    }
}

struct Batcher {
    customer: Int64Builder,
    order: Int64Builder,
    day: Date32Builder,
    amount: Float64Builder,
    margin: Float64Builder,
    category: StringBuilder,
    peer_group: Option<StringBuilder>,
    len: usize,
}

impl Batcher {
    fn new(wallets: bool) -> Self {
        Batcher {
            customer: Int64Builder::with_capacity(BATCH_ROWS),
            order: Int64Builder::with_capacity(BATCH_ROWS),
            day: Date32Builder::with_capacity(BATCH_ROWS),
            amount: Float64Builder::with_capacity(BATCH_ROWS),
            margin: Float64Builder::with_capacity(BATCH_ROWS),
            category: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 6),
            peer_group: wallets.then(|| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 6)),
            len: 0,
        }
    }
    fn finish(&mut self) -> Result<Drawn> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.customer.finish()),
            Arc::new(self.order.finish()),
            Arc::new(self.day.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.margin.finish()),
            Arc::new(self.category.finish()),
        ];
        if let Some(p) = self.peer_group.as_mut() {
            cols.push(Arc::new(p.finish()));
        }
        self.len = 0;
        let wallets = self.peer_group.is_some();
        Ok(Drawn::Transactions(RecordBatch::try_new(
            schema(wallets),
            cols,
        )?))
    }
}

/// What the drawing thread sends: transaction rows, or true wallets.
enum Drawn {
    Transactions(RecordBatch),
    Wallets(RecordBatch),
}

/// One customer's latent wallet (see [`WalletRecipe`]).
struct CustomerWallet {
    band: usize,
    categories: Vec<usize>,
    need: f64,
    share: f64,
}

/// The wallet draws, from their own random stream (so the BG/NBD draws are
/// the same numbers with and without `--wallets`), and the rows of the
/// true wallets' file.
struct WalletDraws {
    rng: rand::rngs::StdRng,
    share: Beta<f64>,
    noise: LogNormal<f64>,
    recipe: WalletRecipe,
    customer: Int64Builder,
    band: StringBuilder,
    wallet: Float64Builder,
    share_out: Float64Builder,
    categories: Int64Builder,
    category_wallet: Float64Builder,
}

impl WalletDraws {
    fn new(recipe: WalletRecipe, seed: u64) -> Result<Self> {
        Ok(WalletDraws {
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x5741_4c4c_4554),
            share: Beta::new(recipe.share_a, recipe.share_b).map_err(dist_err)?,
            noise: LogNormal::new(0.0, recipe.need_sigma).map_err(dist_err)?,
            recipe,
            customer: Int64Builder::new(),
            band: StringBuilder::new(),
            wallet: Float64Builder::new(),
            share_out: Float64Builder::new(),
            categories: Int64Builder::new(),
            category_wallet: Float64Builder::new(),
        })
    }

    /// Draw customer `id`'s wallet given their weekly rate `lambda`, and
    /// record it.
    fn draw(&mut self, id: i64, lambda: f64) -> CustomerWallet {
        let band = self.rng.random_range(0..SIZE_BANDS.len());
        let k = self.rng.random_range(1..=CATEGORIES.len());
        let mut all: Vec<usize> = (0..CATEGORIES.len()).collect();
        for i in 0..k {
            let j = self.rng.random_range(i..all.len());
            all.swap(i, j);
        }
        all.truncate(k);
        let need = self.recipe.need_scale
            * SIZE_BANDS[band].1
            * (k as f64 / 4.0).sqrt()
            * self.noise.sample(&mut self.rng);
        let share: f64 = self.share.sample(&mut self.rng);
        let wallet = need * lambda * 365.0 / WEEK_DAYS;
        self.customer.append_value(id);
        self.band.append_value(SIZE_BANDS[band].0);
        self.wallet.append_value(wallet);
        self.share_out.append_value(share);
        self.categories.append_value(k as i64);
        self.category_wallet.append_value(wallet / k as f64);
        CustomerWallet {
            band,
            categories: all,
            need,
            share,
        }
    }

    fn finish(&mut self) -> Result<Drawn> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.customer.finish()),
            Arc::new(self.band.finish()),
            Arc::new(self.wallet.finish()),
            Arc::new(self.share_out.finish()),
            Arc::new(self.categories.finish()),
            Arc::new(self.category_wallet.finish()),
        ];
        Ok(Drawn::Wallets(RecordBatch::try_new(wallet_schema(), cols)?))
    }
}

fn dist_err(e: impl std::fmt::Display) -> Error {
    Error::Argument(format!("invalid generation parameter: {e}"))
}

/// The generator draws in weeks (the unit of its BG/NBD parameters).
const WEEK_DAYS: f64 = TimeUnit::Week.days();

/// The distributions one data set's customers are drawn from.
pub struct Population {
    lambda: Gamma<f64>,
    dropout: Beta<f64>,
    nu: Gamma<f64>,
    spend_shape: f64,
    start_day: i64,
    end_day: i64,
    acquisition_days: i64,
}

/// One customer's latent BG/NBD and Gamma-Gamma traits.
pub struct Traits {
    /// Purchase rate per week (Gamma(r, alpha)).
    pub lambda: f64,
    /// Dropout probability after each repeat purchase (Beta(a, b)).
    pub p: f64,
    /// Spend rate: an order's total is Gamma(p, nu) (nu from Gamma(q, v)).
    pub nu: f64,
}

impl Population {
    /// The distributions of `opts`' parameters; `Error::InvalidArgs` for
    /// parameters no distribution takes.
    pub fn new(opts: &GenerateOptions) -> Result<Population> {
        let (start_day, end_day) = (epoch_day(opts.start), epoch_day(opts.end));
        Ok(Population {
            lambda: Gamma::new(opts.r, 1.0 / opts.alpha).map_err(dist_err)?,
            dropout: Beta::new(opts.a, opts.b).map_err(dist_err)?,
            nu: Gamma::new(opts.q, 1.0 / opts.v).map_err(dist_err)?,
            spend_shape: opts.p,
            start_day,
            end_day,
            acquisition_days: opts.acquisition_days.clamp(1, end_day - start_day + 1),
        })
    }

    /// Draw one customer's traits (the first draws of a customer).
    pub fn draw_traits<R: Rng>(&self, rng: &mut R) -> Traits {
        Traits {
            lambda: self.lambda.sample(rng),
            p: self.dropout.sample(rng),
            nu: self.nu.sample(rng),
        }
    }

    /// The Gamma-Gamma order total of a customer with these traits.
    pub fn spend(&self, traits: &Traits) -> Result<Gamma<f64>> {
        Gamma::new(self.spend_shape, 1.0 / traits.nu.max(1e-12)).map_err(dist_err)
    }

    /// Draw one customer: `purchase(day, amount, rng)` is called for each
    /// purchase in order (day in days since 1970-01-01, the first one the
    /// acquisition day), and may draw from `rng` itself; it returns false
    /// to stop drawing. The draws are those of `custval generate`, in its
    /// order, so a seed gives the same customers here and in its files.
    pub fn draw_customer<R: Rng>(
        &self,
        rng: &mut R,
        purchase: impl FnMut(i64, f64, &mut R) -> bool,
    ) -> Result<bool> {
        let traits = self.draw_traits(rng);
        let spend = self.spend(&traits)?;
        self.draw_purchases(rng, &traits, &spend, purchase)
    }

    /// The purchases of a customer with `traits` and order totals drawn
    /// from `spend` (see [`Population::draw_customer`]).
    pub fn draw_purchases<R: Rng>(
        &self,
        rng: &mut R,
        traits: &Traits,
        spend: &Gamma<f64>,
        mut purchase: impl FnMut(i64, f64, &mut R) -> bool,
    ) -> Result<bool> {
        let first = self.start_day + rng.random_range(0..self.acquisition_days);
        let horizon_weeks = (self.end_day - first) as f64 / WEEK_DAYS;
        let mut t_weeks = 0.0;
        let mut count = 0u64;
        loop {
            if count > 0 {
                // Exponential waiting time to the next purchase (weeks).
                let exp = Exp::new(traits.lambda.max(1e-12)).map_err(dist_err)?;
                t_weeks += exp.sample(rng);
                if t_weeks > horizon_weeks {
                    break;
                }
            }
            let day = first + (t_weeks * WEEK_DAYS).floor() as i64;
            let total: f64 = spend.sample(rng);
            if !purchase(day, total, rng) {
                return Ok(false);
            }
            count += 1;
            // After each repeat purchase the customer drops out with probability p.
            if count > 1 && rng.random::<f64>() < traits.p {
                break;
            }
        }
        Ok(true)
    }
}

/// Draw all customers, sending batches to `tx`. Runs on a blocking thread.
fn draw(opts: &GenerateOptions, tx: tokio::sync::mpsc::Sender<Result<Drawn>>) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let population = Population::new(opts)?;
    let mut wallets = match opts.wallets {
        Some(r) => Some(WalletDraws::new(r, opts.seed)?),
        None => None,
    };
    let mut out = Batcher::new(wallets.is_some());
    let mut order_id: i64 = 0;
    for c in 0..opts.customers {
        let customer = c as i64 + 1;
        let traits = population.draw_traits(&mut rng);
        let wallet = wallets.as_mut().map(|w| w.draw(customer, traits.lambda));
        // An order's total: Gamma(p, nu), or with a wallet Gamma(p, p / (s * need)).
        let spend = match &wallet {
            None => population.spend(&traits)?,
            Some(w) => {
                Gamma::new(opts.p, (w.share * w.need).max(1e-12) / opts.p).map_err(dist_err)?
            }
        };
        let go_on = population.draw_purchases(&mut rng, &traits, &spend, |day, total, rng| {
            order_id += 1;
            let lines = rng.random_range(1..=3usize);
            let mut left = total;
            for l in 0..lines {
                let amount = if l + 1 == lines {
                    left
                } else {
                    left * rng.random_range(0.2..0.8)
                };
                left -= amount;
                out.customer.append_value(customer);
                out.order.append_value(order_id);
                out.day.append_value(day as i32);
                out.amount.append_value(amount);
                out.margin.append_value(amount * rng.random_range(0.1..0.5));
                let category = rng.random_range(0..CATEGORIES.len());
                match (&wallet, wallets.as_mut(), out.peer_group.as_mut()) {
                    (Some(w), Some(draws), Some(peer)) => {
                        // Uniform over the customer's categories, from the wallet stream.
                        let pick = draws.rng.random_range(0..w.categories.len());
                        out.category.append_value(CATEGORIES[w.categories[pick]]);
                        peer.append_value(SIZE_BANDS[w.band].0);
                    }
                    _ => out.category.append_value(CATEGORIES[category]),
                }
                out.len += 1;
                if out.len >= BATCH_ROWS && tx.blocking_send(out.finish()).is_err() {
                    return false;
                }
            }
            true
        })?;
        if !go_on {
            return Ok(());
        }
    }
    if out.len > 0 {
        let _ = tx.blocking_send(out.finish());
    }
    if let Some(w) = wallets.as_mut() {
        let _ = tx.blocking_send(w.finish());
    }
    Ok(())
}

fn props() -> Result<WriterProperties> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build())
}

/// Generate into the folder `out`: `transactions/part-NNNNN.parquet` and `truth.json`.
pub async fn generate(out: &Location, opts: &GenerateOptions) -> Result<GenerateSummary> {
    opts.validate()?;
    let store = build_store(out)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Drawn>>(4);
    let o = opts.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let tx2 = tx.clone();
        if let Err(e) = draw(&o, tx) {
            let _ = tx2.blocking_send(Err(e));
        }
    });
    let dir = out.join("transactions/")?;
    let mut files = Vec::new();
    let mut rows: u64 = 0;
    let mut writer: Option<AsyncArrowWriter<BufWriter>> = None;
    let mut file_rows = 0usize;
    let mut wallets_file = None;
    while let Some(drawn) = rx.recv().await {
        let batch = match drawn? {
            Drawn::Transactions(b) => b,
            Drawn::Wallets(b) => {
                wallets_file = Some(write_wallets(&store, out, &b).await?);
                continue;
            }
        };
        if writer.is_none() {
            let name = format!("part-{:05}.parquet", files.len());
            let path = dir.path().clone().join(name.as_str());
            let w = BufWriter::new(store.clone(), path);
            writer = Some(AsyncArrowWriter::try_new(
                w,
                batch.schema(),
                Some(props()?),
            )?);
            files.push(dir.join(&name)?.to_string());
            file_rows = 0;
        }
        if let Some(w) = writer.as_mut() {
            w.write(&batch).await?;
        }
        file_rows += batch.num_rows();
        rows += batch.num_rows() as u64;
        if file_rows >= opts.rows_per_file {
            if let Some(w) = writer.take() {
                w.close().await?;
            }
        }
    }
    if let Some(w) = writer.take() {
        w.close().await?;
    }
    producer
        .await
        .map_err(|e| Error::Internal(format!("generator thread failed: {e}")))?;
    let truth = serde_json::json!({
        "time_unit": "week",
        "bgnbd": {"r": opts.r, "alpha": opts.alpha, "a": opts.a, "b": opts.b},
        "gamma_gamma": {"p": opts.p, "q": opts.q, "v": opts.v},
        "customers": opts.customers,
        "rows": rows,
        "seed": opts.seed,
        "start": opts.start.to_string(),
        "end": opts.end.to_string(),
        "acquisition_days": opts.acquisition_days,
        "wallets": opts.wallets.map(wallet_truth),
    });
    let truth_loc = out.join("truth.json")?;
    let body = serde_json::to_vec_pretty(&truth)?;
    store
        .put(&truth_loc.path(), PutPayload::from(body))
        .await
        .map_err(|e| Error::storage(truth_loc.to_string(), e))?;
    Ok(GenerateSummary {
        customers: opts.customers,
        rows,
        files,
        truth: truth_loc.to_string(),
        wallets: wallets_file,
    })
}

/// Write the true wallets to `out/wallets/part-00000.parquet`; its URL.
async fn write_wallets(
    store: &Arc<dyn object_store::ObjectStore>,
    out: &Location,
    batch: &RecordBatch,
) -> Result<String> {
    let loc = out.join("wallets/part-00000.parquet")?;
    let w = BufWriter::new(store.clone(), loc.path().clone());
    let mut writer = AsyncArrowWriter::try_new(w, wallet_schema(), Some(props()?))?;
    writer.write(batch).await?;
    writer.close().await?;
    Ok(loc.to_string())
}

/// `truth.json`'s `wallets`: the recipe in words and numbers.
fn wallet_truth(r: WalletRecipe) -> serde_json::Value {
    let bands: serde_json::Map<String, serde_json::Value> = SIZE_BANDS
        .iter()
        .map(|(n, m)| (n.to_string(), (*m).into()))
        .collect();
    serde_json::json!({
        "recipe": "per customer: peer_group g uniform over size_bands; k categories needed, \
                   uniform 1..=8, a uniform subset (order lines uniform over it); \
                   need = need_scale * size_bands[g] * sqrt(k / 4) * LogNormal(0, need_sigma) \
                   per purchase occasion; occasions at the BG/NBD rate lambda per week; \
                   wallet = need * lambda * 365 / 7 (money per 365 days); share ~ \
                   Beta(share_a, share_b); an order's total ~ Gamma(p, scale share * need / p) \
                   (the Gamma-Gamma draw is not used); category wallet = wallet / k for \
                   each needed category",
        "need_scale": r.need_scale,
        "need_sigma": r.need_sigma,
        "share_a": r.share_a,
        "share_b": r.share_b,
        "size_bands": bands,
        "file": "wallets/part-00000.parquet (customer_id, peer_group, wallet, share, categories, category_wallet)",
    })
}
