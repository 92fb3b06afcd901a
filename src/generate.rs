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
use rand_distr::{Beta, Distribution, Exp, Gamma};
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
}

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

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("order_ts", DataType::Date32, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("margin", DataType::Float64, false),
        Field::new("category", DataType::Utf8, false),
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
    len: usize,
}

impl Batcher {
    fn new() -> Self {
        Batcher {
            customer: Int64Builder::with_capacity(BATCH_ROWS),
            order: Int64Builder::with_capacity(BATCH_ROWS),
            day: Date32Builder::with_capacity(BATCH_ROWS),
            amount: Float64Builder::with_capacity(BATCH_ROWS),
            margin: Float64Builder::with_capacity(BATCH_ROWS),
            category: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 6),
            len: 0,
        }
    }
    fn finish(&mut self) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.customer.finish()),
            Arc::new(self.order.finish()),
            Arc::new(self.day.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.margin.finish()),
            Arc::new(self.category.finish()),
        ];
        self.len = 0;
        Ok(RecordBatch::try_new(schema(), cols)?)
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

    /// Draw one customer: `purchase(day, amount, rng)` is called for each
    /// purchase in order (day in days since 1970-01-01, the first one the
    /// acquisition day), and may draw from `rng` itself; it returns false
    /// to stop drawing. The draws are those of `custval generate`, in its
    /// order, so a seed gives the same customers here and in its files.
    pub fn draw_customer<R: Rng>(
        &self,
        rng: &mut R,
        mut purchase: impl FnMut(i64, f64, &mut R) -> bool,
    ) -> Result<bool> {
        let lambda: f64 = self.lambda.sample(rng);
        let p: f64 = self.dropout.sample(rng);
        let nu: f64 = self.nu.sample(rng);
        let spend = Gamma::new(self.spend_shape, 1.0 / nu.max(1e-12)).map_err(dist_err)?;
        let first = self.start_day + rng.random_range(0..self.acquisition_days);
        let horizon_weeks = (self.end_day - first) as f64 / WEEK_DAYS;
        let mut t_weeks = 0.0;
        let mut count = 0u64;
        loop {
            if count > 0 {
                // Exponential waiting time to the next purchase (weeks).
                let exp = Exp::new(lambda.max(1e-12)).map_err(dist_err)?;
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
            if count > 1 && rng.random::<f64>() < p {
                break;
            }
        }
        Ok(true)
    }
}

/// Draw all customers, sending batches to `tx`. Runs on a blocking thread.
fn draw(opts: &GenerateOptions, tx: tokio::sync::mpsc::Sender<Result<RecordBatch>>) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let population = Population::new(opts)?;
    let mut out = Batcher::new();
    let mut order_id: i64 = 0;
    for c in 0..opts.customers {
        let customer = c as i64 + 1;
        let go_on = population.draw_customer(&mut rng, |day, total, rng| {
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
                out.category
                    .append_value(CATEGORIES[rng.random_range(0..CATEGORIES.len())]);
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
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
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
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        if writer.is_none() {
            let name = format!("part-{:05}.parquet", files.len());
            let path = dir.path().clone().join(name.as_str());
            let w = BufWriter::new(store.clone(), path);
            writer = Some(AsyncArrowWriter::try_new(w, schema(), Some(props()?))?);
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
    })
}
