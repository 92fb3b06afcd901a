//! Column docs: the one home of every published column's one-line
//! description and unit ([`TABLES`]). From here they are written into each
//! Parquet file's field metadata ([`annotate`], keys [`DESCRIPTION_KEY`] and
//! [`UNIT_KEY`]) and so into the manifest's column entries, printed by
//! `custval describe TABLE` ([`describe`]) and rendered as the README's
//! table reference ([`markdown`], `custval describe --markdown`).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// Field metadata key of a column's one-line description.
pub const DESCRIPTION_KEY: &str = "description";

/// Field metadata key of a column's unit.
pub const UNIT_KEY: &str = "unit";

/// One published column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name, as published.
    pub name: &'static str,
    /// Unit: `money` (the unit of the mapped `amount` or `margin`),
    /// `time_unit` (the job's `time_unit`, weeks by default), `date`,
    /// `count`, `share` (0 to 1), `probability`, `points`, `text`, `flag`,
    /// `none` (a dimensionless number).
    pub unit: &'static str,
    /// What the value is, in one line.
    pub description: &'static str,
}

/// One published table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Table name (the folder under OUTPUT).
    pub name: &'static str,
    /// What one row is.
    pub row: &'static str,
    /// The shipped jobs that publish it (`nightly`, `clv`, `subscriptions`).
    pub jobs: &'static [&'static str],
    /// Its columns, in published order.
    pub columns: &'static [Column],
}

const fn c(name: &'static str, unit: &'static str, description: &'static str) -> Column {
    Column {
        name,
        unit,
        description,
    }
}

const CUSTOMER_RFM: &[Column] = &[
    c("customer_id", "text", "the customer's id, as text"),
    c("first_purchase", "date", "first purchase day (the calendar day in the job's timezone)"),
    c("last_purchase", "date", "last purchase day (the calendar day in the job's timezone)"),
    c(
        "orders",
        "count",
        "distinct order ids with a purchase line (amount >= 0), plus purchase lines without an order id; a refund or return is no order",
    ),
    c("revenue", "money", "sum of amount, returns netted"),
    c("margin", "money", "sum of margin, when mapped (else NULL)"),
    c(
        "value_total",
        "money",
        "sum of the measured value (parameter value: revenue or margin)",
    ),
    c(
        "frequency",
        "count",
        "purchase days - 1 (same-day purchases merged)",
    ),
    c(
        "recency",
        "time_unit",
        "time from the first to the last purchase day",
    ),
    c(
        "t",
        "time_unit",
        "time from the first purchase day to the as-of date",
    ),
    c(
        "monetary_value",
        "money",
        "mean value of the repeat purchase days (0 without any)",
    ),
    c(
        "p_alive",
        "probability",
        "BG/NBD probability that the customer is still active",
    ),
    c(
        "expected_purchases",
        "count",
        "BG/NBD expected repeat purchase days in the next horizon_months (months of 30 days, or 4.345 weeks with time_unit = week)",
    ),
    c(
        "expected_avg_value",
        "money",
        "Gamma-Gamma expected value of a purchase day",
    ),
    c(
        "clv",
        "money",
        "discounted expected value in the next horizon_months (months of 30 days, or 4.345 weeks with time_unit = week; never negative)",
    ),
    c(
        "clv_low",
        "money",
        "lower end of the interval (parameter interval, 0.9) of clv over the fitted parameters' uncertainty (delta method, under the model that drives the tiers; NULL with interval = 0, without a covariance or when unbounded)",
    ),
    c(
        "clv_high",
        "money",
        "upper end of that interval of clv",
    ),
];

const CUSTOMER_TIERS_REST: &[Column] = &[
    c("revenue_share", "share", "the customer's share of total revenue (NULL when that is not positive)"),
    c("pareto_class", "text", "A, B or C by cumulative value share (pareto_a, pareto_b)"),
    c("spend_12m", "money", "value in the 12 calendar months ending at the as-of date (after as_of - 12 months: 2023-07-01 to 2024-06-30 for 2024-06-30)"),
    c("wallet", "money", "the customer's wallet (spend in the category with us and elsewhere, 12 months): the wallets input, else the conditional wallet_quantile of spend_12m given the customer's features (at least spend_12m, at most the most spent by a customer at most as frequent; with a survey sample in the wallets input, 1 + it multiplied by wallet_calibration), or the peer group's"),
    c("wallet_source", "text", "where wallet comes from: input, model (quantile regression) or peer_group"),
    c("wallet_calibration", "none", "the multiplier on 1 + the model's wallet that puts the wallet_quantile of the surveyed customers' true wallets (the wallets input; separately for those who bought in the 12 months and those who did not, at least 100 each) below the estimate; NULL where wallet is not the model's or no survey calibrated it: the estimate then assumes the top 1 - wallet_quantile of comparable customers give you all of their wallet, and is a lower bound where they do not"),
    c("share_of_wallet", "share", "spend_12m / wallet, at most 1; 0 when nothing was spent and the wallet is positive; NULL when the wallet is 0 (no comparable customer spent anything and no survey calibrated the estimate: the share cannot be told)"),
    c("wallet_headroom", "money", "wallet - spend_12m, at least 0"),
    c("at_risk", "flag", "in the top platinum + gold share by value, with p_alive below at_risk_p_alive"),
    c("rank_tier", "text", "the tier tonight's CLV rank alone gives (Platinum, Gold, Silver, Bronze) or At risk; without a CLV (an unconverged fit published with allow_unconverged) the rank by value_total, i.e. past revenue or margin"),
    c("tier", "text", "the published tier: rank_tier, or last run's tier kept by hysteresis (tier_hysteresis, tier_min_nights)"),
    c("previous_tier", "text", "the tier in the latest earlier published partition (NULL without one)"),
    c("tier_changed_at", "date", "as-of date of the run that gave the current tier (NULL if carried from a partition without it)"),
    c("tier_pending_nights", "count", "consecutive runs in which rank_tier has differed from the kept tier (0 when equal)"),
];

const CUSTOMER_CLV_EXTRA: &[Column] = &[
    c(
        "first_day",
        "count",
        "first purchase day (in the job's timezone), days since 1970-01-01",
    ),
    c(
        "last_day",
        "count",
        "last purchase day (in the job's timezone), days since 1970-01-01",
    ),
    c(
        "cal_frequency",
        "count",
        "frequency in the calibration period (holdout_days > 0; else -1)",
    ),
    c(
        "cal_recency",
        "time_unit",
        "recency in the calibration period",
    ),
    c(
        "cal_t",
        "time_unit",
        "t at the end of the calibration period",
    ),
    c(
        "holdout_purchases",
        "count",
        "repeat purchase days in the holdout",
    ),
    c(
        "holdout_predicted",
        "count",
        "repeat purchase days the calibration fit expects in the holdout",
    ),
];

/// Every column of `customer_clv`, in published order.
const CUSTOMER_CLV: &[Column] = &[
    CUSTOMER_RFM[0],
    CUSTOMER_CLV_EXTRA[0],
    CUSTOMER_CLV_EXTRA[1],
    CUSTOMER_RFM[1],
    CUSTOMER_RFM[2],
    CUSTOMER_RFM[3],
    CUSTOMER_RFM[4],
    CUSTOMER_RFM[5],
    CUSTOMER_RFM[6],
    CUSTOMER_RFM[7],
    CUSTOMER_RFM[8],
    CUSTOMER_RFM[9],
    CUSTOMER_CLV_EXTRA[2],
    CUSTOMER_CLV_EXTRA[3],
    CUSTOMER_CLV_EXTRA[4],
    CUSTOMER_CLV_EXTRA[5],
    CUSTOMER_RFM[10],
    CUSTOMER_RFM[11],
    CUSTOMER_RFM[12],
    CUSTOMER_RFM[13],
    CUSTOMER_RFM[14],
    CUSTOMER_RFM[15],
    CUSTOMER_RFM[16],
    CUSTOMER_CLV_EXTRA[6],
];

const fn concat<const N: usize>(a: &[Column], b: &[Column]) -> [Column; N] {
    let mut out = [c("", "", ""); N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - a.len()];
        i += 1;
    }
    out
}

const CUSTOMER_TIERS: [Column; CUSTOMER_RFM.len() + CUSTOMER_TIERS_REST.len()] =
    concat(CUSTOMER_RFM, CUSTOMER_TIERS_REST);

const MODEL_FIT: &[Column] = &[
    c(
        "model",
        "text",
        "bgnbd, pareto_nbd or mbgnbd (each model the job fits), or gamma_gamma",
    ),
    c(
        "r",
        "none",
        "BG/NBD, Pareto/NBD, MBG/NBD shape of the purchase-rate Gamma",
    ),
    c(
        "alpha",
        "time_unit",
        "BG/NBD, Pareto/NBD, MBG/NBD scale of the purchase-rate Gamma",
    ),
    c(
        "a",
        "none",
        "BG/NBD, MBG/NBD Beta(a, b) of the dropout probability at a purchase",
    ),
    c(
        "b",
        "none",
        "BG/NBD, MBG/NBD Beta(a, b) of the dropout probability at a purchase",
    ),
    c("p", "none", "Gamma-Gamma shape of the spend per purchase"),
    c(
        "q",
        "none",
        "Gamma-Gamma shape of the spend-scale distribution",
    ),
    c(
        "v",
        "money",
        "Gamma-Gamma scale of the spend-scale distribution",
    ),
    c(
        "v_over_q",
        "money",
        "Gamma-Gamma v / q; at the one-spend-rate boundary (q, v NULL) the limit's scale",
    ),
    c("se_r", "none", "standard error of r (inverse observed information, delta method; NULL at a bound)"),
    c("se_alpha", "time_unit", "standard error of alpha"),
    c("se_a", "none", "standard error of a (NULL at the bound a = 0: see at_bound)"),
    c("se_b", "none", "standard error of b (NULL at the bound a = 0, where b has no effect)"),
    c("se_p", "none", "standard error of p"),
    c("se_q", "none", "standard error of q (NULL at the one-spend-rate bound)"),
    c("se_v", "money", "standard error of v (NULL at the one-spend-rate bound)"),
    c("se_v_over_q", "money", "standard error of v_over_q"),
    c(
        "log_likelihood",
        "none",
        "log-likelihood at the fitted parameters",
    ),
    c("customers", "count", "customers the model was fitted on"),
    c("converged", "flag", "true only at a verified optimum"),
    c("iterations", "count", "optimizer iterations"),
    c(
        "status",
        "text",
        "converged, boundary (a verified optimum at a bound), or why not (not identified, a parameter ran off, stopped short)",
    ),
    c(
        "at_bound",
        "text",
        "for a boundary optimum: the parameters at their bound and the limiting model used",
    ),
    c(
        "penalizer",
        "none",
        "the penalizer parameter: L2 weight on the log-parameters (0 = plain maximum likelihood)",
    ),
    c(
        "time_unit",
        "text",
        "day or week: the unit of alpha, beta, recency and t",
    ),
    c("holdout_days", "count", "the holdout_days parameter"),
    c(
        "holdout_customers",
        "count",
        "with a holdout: customers in it",
    ),
    c(
        "holdout_predicted",
        "count",
        "with a holdout: predicted repeat purchase days in it",
    ),
    c(
        "holdout_actual",
        "count",
        "with a holdout: actual repeat purchase days in it",
    ),
    c(
        "holdout_mae",
        "count",
        "with a holdout: mean absolute error per customer",
    ),
    c(
        "holdout_rank_correlation",
        "none",
        "with a holdout: rank correlation of predicted and actual per customer",
    ),
    c(
        "s",
        "none",
        "Pareto/NBD shape of the dropout-rate Gamma",
    ),
    c(
        "beta",
        "time_unit",
        "Pareto/NBD scale of the dropout-rate Gamma",
    ),
    c("se_s", "none", "standard error of s (NULL at the bound s = 0: see at_bound)"),
    c("se_beta", "time_unit", "standard error of beta (NULL at the bound s = 0, where beta has no effect)"),
    c(
        "dropout",
        "none",
        "BG/NBD, MBG/NBD mean dropout probability a / (a + b); at the one-dropout boundary (a, b NULL) everyone's",
    ),
    c("se_dropout", "none", "standard error of dropout"),
    c(
        "free_parameters",
        "count",
        "parameters fitted: 4 (Gamma-Gamma 3), the limiting model's at a boundary optimum (2 without dropout, 3 with one dropout probability or rate, 1 for a Poisson process)",
    ),
    c(
        "aic",
        "none",
        "Akaike information criterion 2 free_parameters - 2 log_likelihood (lower is better)",
    ),
    c(
        "bic",
        "none",
        "Bayesian information criterion free_parameters ln(customers) - 2 log_likelihood",
    ),
    c(
        "drives_scores",
        "flag",
        "true for the purchase model (the model parameter) whose scores, CLV and tiers are published",
    ),
];

const CONCENTRATION: &[Column] = &[
    c(
        "measure",
        "text",
        "what is measured: the value (revenue or margin), or clv",
    ),
    c(
        "customers",
        "count",
        "customers counted (negative values count as 0)",
    ),
    c("total", "money", "the measure summed over all customers"),
    c(
        "top_20pct_share",
        "share",
        "share of the top 20% of customers",
    ),
    c(
        "customers_for_80pct",
        "count",
        "fewest customers that make 80%",
    ),
    c(
        "gini",
        "none",
        "Gini coefficient (0 equal, 1 all in one customer)",
    ),
    c(
        "hhi",
        "none",
        "Herfindahl-Hirschman index (sum of squared shares)",
    ),
];

const RETENTION_COHORTS: &[Column] = &[
    c("cohort", "date", "month of the first purchase (its first day)"),
    c("period", "count", "months since the cohort month"),
    c("cohort_size", "count", "customers in the cohort"),
    c("active_customers", "count", "of them, customers with a purchase in the period"),
    c("retention_rate", "share", "customer retention: active_customers / cohort_size, at most 1"),
    c("revenue", "money", "the cohort's value in the period"),
    c("revenue_retention", "share", "revenue retention: revenue / the cohort's first-month value (may exceed 1; NULL if that is not positive)"),
];

const RETENTION_RATES: &[Column] = &[
    c("period_start", "date", "the month's first day"),
    c(
        "customers_start",
        "count",
        "S: customers active in the previous month",
    ),
    c("customers_new", "count", "N: first purchases in the month"),
    c(
        "customers_end",
        "count",
        "E: customers active in the month (= N + retained + reactivated)",
    ),
    c("retained", "count", "customers active in both months"),
    c(
        "reactivated",
        "count",
        "active in the month, not in the previous one, not new",
    ),
    c(
        "retention_rate",
        "share",
        "retained / S, at most 1 (NULL when S = 0)",
    ),
    c("churn_rate", "share", "1 - retention_rate"),
    c(
        "crr_formula",
        "share",
        "(E - N) / S, the textbook formula: counts reactivated as retained, may exceed 1",
    ),
    c(
        "repeat_purchase_rate",
        "share",
        "(E - N) / E: share of the month's customers who are not new",
    ),
];

const CATEGORY_SHARE: &[Column] = &[
    c("customer_id", "text", "the customer's id, as text"),
    c(
        "category",
        "text",
        "the category ((none) when unmapped or empty)",
    ),
    c("spend", "money", "the customer's value in the category"),
    c("share_of_customer", "share", "spend / the customer's total"),
    c("share_of_category", "share", "spend / the category's total"),
    c("spend_12m", "money", "the customer's value in the category in the 12 calendar months ending at the as-of date (as customer_tiers.spend_12m)"),
    c("wallet", "money", "the customer's wallet in the category: the customer's wallet split over the categories bought in proportion to their totals over all customers"),
    c("share_of_wallet", "share", "spend_12m / wallet, at most 1"),
];

const REJECTED_ROWS: &[Column] = &[
    c("customer_id", "text", "the row's customer_id as read"),
    c("order_ts", "text", "the row's order_ts as read"),
    c("amount", "text", "the row's amount as read"),
    c("order_id", "text", "the row's order_id as read"),
    c("category", "text", "the row's category as read"),
    c("margin", "text", "the row's margin as read"),
    c(
        "reason",
        "text",
        "why, e.g. unparseable order_ts, missing customer_id",
    ),
];

const TIER_TRANSITIONS: &[Column] = &[
    c("previous_tier", "text", "tier in the previous published partition (NULL: no previous tier, e.g. a first run or new customers)"),
    c("tier", "text", "tier tonight"),
    c("customers", "count", "customers who moved from previous_tier to tier (sums to all customers)"),
    c("clv", "money", "their summed clv"),
    c("revenue", "money", "their summed revenue"),
];

const RETENTION_SCENARIOS: &[Column] = &[
    c("uplift_points", "points", "retention points added: the mean BG/NBD survival at a purchase, 1 - a / (a + b), raised by this / 100"),
    c("tier", "text", "the customers' tier, or Total for all"),
    c("clv_base", "money", "their summed clv"),
    c("clv_scenario", "money", "their summed CLV with the lowered dropout (NULL when the uplift reaches the mean dropout, or a fit did not converge)"),
    c("clv_gain", "money", "clv_scenario - clv_base"),
    c("clv_gain_share", "share", "clv_gain / clv_base (NULL when clv_base is not positive)"),
    c("purchases_gain", "count", "change of their summed expected_purchases in the horizon"),
];

const SUBSCRIPTION_SURVIVAL: &[Column] = &[
    c(
        "cohort",
        "date",
        "start period of the cohort (its first day)",
    ),
    c("period", "count", "periods (period_months) since the start"),
    c(
        "observed_survivors",
        "count",
        "subscribers still active at the period (NULL in the future)",
    ),
    c(
        "projected_survivors",
        "count",
        "cohort size x projected_survival",
    ),
    c("projected_survival", "share", "sBG survival S(period)"),
    c(
        "projected_retention",
        "share",
        "sBG period retention r(period) (NULL for period 0)",
    ),
    c("alpha", "none", "sBG alpha of the cohort's fit"),
    c("beta", "none", "sBG beta of the cohort's fit"),
    c("converged", "flag", "whether the cohort's fit converged"),
];

const SUBSCRIPTION_MODEL_FIT: &[Column] = &[
    c(
        "cohort",
        "date",
        "start period of the cohort (its first day)",
    ),
    c(
        "cohort_size",
        "count",
        "subscribers who started in the cohort",
    ),
    c(
        "periods_observed",
        "count",
        "periods observed since the start",
    ),
    c("alpha", "none", "sBG alpha of the Beta churn distribution"),
    c("beta", "none", "sBG beta of the Beta churn distribution"),
    c(
        "log_likelihood",
        "none",
        "log-likelihood at the fitted parameters",
    ),
    c("converged", "flag", "true only at a verified optimum"),
    c("iterations", "count", "optimizer iterations"),
];

const CUSTOMER_STATE: &[Column] = &[
    c("customer_id", "text", "the customer's id, as text (NULL for the rows without one)"),
    c("rows_read", "count", "rows before state_cutoff the input's `where` keeps"),
    c("rows_filtered", "count", "rows before state_cutoff the input's `where` leaves out"),
    c("rows_rejected", "count", "rows before state_cutoff rejected by validation"),
    c("rows_after_as_of", "count", "usable rows after the as-of date (0: the state's days are all before it)"),
    c("newest_order_ts", "date", "the newest usable row's day before state_cutoff, returns included"),
    c("lines", "count", "usable rows before state_cutoff, exact repeats counted once"),
    c("duplicate_lines", "count", "exact repeats of a row of the same order_id before state_cutoff"),
    c("orders", "count", "orders with a purchase line before state_cutoff (distinct order ids plus lines without one)"),
    c("revenue", "money", "sum of amount before state_cutoff"),
    c("margin", "money", "sum of margin before state_cutoff (NULL when every margin is)"),
    c("value_total", "money", "sum of the measured value before state_cutoff"),
    c("purchase_days", "count", "days before state_cutoff whose lines net to 0 or more"),
    c("first_purchase", "date", "first purchase day (the calendar day in the job's timezone)"),
    c("last_purchase", "date", "last purchase day before state_cutoff"),
    c("repeat_value", "money", "value of the purchase days after the first (NULL when the first day's value is)"),
    c("first_value", "money", "value of the first purchase day"),
    c("purchase_value", "money", "value of all purchase days before state_cutoff"),
    c("cal_purchase_days", "count", "purchase days in the calibration period (all of the state's: holdout_days <= lookback_days)"),
    c("cal_last_purchase", "date", "last purchase day in the calibration period"),
    c("holdout_purchases", "count", "purchase days after the calibration end (0 in the state)"),
    c("state_cutoff", "date", "the state counts the rows whose day is before this date (as_of less lookback_days)"),
    c("state_key", "text", "what the state depends on besides the rows (custval version, value, timezone, inputs' options); a night with another key is a full one"),
];

const CUSTOMER_MONTH_STATE: &[Column] = &[
    c("customer_id", "text", "the customer's id, as text"),
    c("m", "month", "the calendar month (in the job's timezone) as months since year 0: year * 12 + month - 1"),
    c("revenue", "money", "sum of the measured value of the customer's usable rows in the month before the customer_state of the same run's state_cutoff, returns included (NULL when every value is)"),
    c("active", "flag", "the customer has a purchase day (lines netting to 0 or more) in the month before that cutoff"),
];

const ORDER_STATE: &[Column] = &[
    c("customer_id", "text", "the customer's id, as text"),
    c("order_id", "text", "an order id (as text) with a purchase line (amount >= 0) on a day before the customer_state of the same run's state_cutoff"),
];

/// Every table a shipped job publishes, with its columns.
pub const TABLES: &[Table] = &[
    Table {
        name: "customer_tiers",
        row: "customer with a purchase day",
        jobs: &["nightly"],
        columns: &CUSTOMER_TIERS,
    },
    Table {
        name: "customer_clv",
        row: "customer with a purchase day",
        jobs: &["clv"],
        columns: CUSTOMER_CLV,
    },
    Table {
        name: "model_fit",
        row: "fitted model (bgnbd, pareto_nbd, mbgnbd as the job fits them; gamma_gamma)",
        jobs: &["nightly", "clv"],
        columns: MODEL_FIT,
    },
    Table {
        name: "concentration",
        row: "measure (the value, and CLV)",
        jobs: &["nightly"],
        columns: CONCENTRATION,
    },
    Table {
        name: "retention_cohorts",
        row: "first-purchase month x months since",
        jobs: &["nightly"],
        columns: RETENTION_COHORTS,
    },
    Table {
        name: "retention_rates",
        row: "calendar month (rates NULL when their base is 0)",
        jobs: &["nightly"],
        columns: RETENTION_RATES,
    },
    Table {
        name: "customer_category_share",
        row: "customer x category",
        jobs: &["nightly"],
        columns: CATEGORY_SHARE,
    },
    Table {
        name: "rejected_rows",
        row: "input row the validation rejected",
        jobs: &["nightly", "clv"],
        columns: REJECTED_ROWS,
    },
    Table {
        name: "tier_transitions",
        row: "previous tier x tier",
        jobs: &["nightly"],
        columns: TIER_TRANSITIONS,
    },
    Table {
        name: "retention_scenarios",
        row: "retention uplift x tier, and a Total row per uplift",
        jobs: &["nightly"],
        columns: RETENTION_SCENARIOS,
    },
    Table {
        name: "subscription_survival",
        row: "start cohort x period",
        jobs: &["subscriptions"],
        columns: SUBSCRIPTION_SURVIVAL,
    },
    Table {
        name: "subscription_model_fit",
        row: "start cohort",
        jobs: &["subscriptions"],
        columns: SUBSCRIPTION_MODEL_FIT,
    },
    Table {
        name: "customer_state",
        row: "customer (NULL id included), the facts of its rows before state_cutoff; incremental runs only",
        jobs: &["nightly", "clv"],
        columns: CUSTOMER_STATE,
    },
    Table {
        name: "order_state",
        row: "customer x order id with a purchase line before customer_state's state_cutoff (an order counts once across cutoffs); incremental runs only",
        jobs: &["nightly", "clv"],
        columns: ORDER_STATE,
    },
    Table {
        name: "customer_month_state",
        row: "customer x calendar month with usable rows before customer_state's state_cutoff (the retention tables' input); incremental runs of jobs with customer_months only",
        jobs: &["nightly"],
        columns: CUSTOMER_MONTH_STATE,
    },
];

/// The table named `name`, if a shipped job publishes one.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// `schema` with each documented column of `table` carrying its description
/// and unit as field metadata (other metadata kept; undocumented columns,
/// e.g. a custom step's own, left as they are).
pub fn annotate(table: &str, schema: &SchemaRef) -> SchemaRef {
    let Some(doc) = self::table(table) else {
        return schema.clone();
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match doc.columns.iter().find(|c| c.name == f.name()) {
            Some(col) => {
                let mut meta: HashMap<String, String> = f.metadata().clone();
                meta.insert(DESCRIPTION_KEY.into(), col.description.into());
                meta.insert(UNIT_KEY.into(), col.unit.into());
                f.as_ref().clone().with_metadata(meta)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `custval describe TABLE`: one line per column (name, unit, description);
/// [`Error::Argument`] naming the known tables when `name` is not one.
pub fn describe(name: &str) -> Result<String> {
    let t = table(name).ok_or_else(|| {
        let known: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        Error::Argument(format!(
            "no published table {name:?}; the tables are {}",
            known.join(", ")
        ))
    })?;
    let width = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let units = t.columns.iter().map(|c| c.unit.len()).max().unwrap_or(0);
    let mut s = format!(
        "{}: one row per {} (jobs: {})\n",
        t.name,
        t.row,
        t.jobs.join(", ")
    );
    for c in t.columns {
        let _ = writeln!(
            s,
            "  {:<width$}  {:<units$}  {}",
            c.name, c.unit, c.description
        );
    }
    Ok(s)
}

/// The table reference in Markdown: a section per table that `job`
/// publishes (every table when `None`), each a table of column, unit and
/// description. The README's reference is this text (a test compares).
pub fn markdown(job: Option<&str>) -> String {
    let mut s = String::from(
        "Units: `money` is the unit of your `amount` (or `margin`) column, `time_unit` the \
         job's `time_unit` (weeks by default), `share` a fraction from 0 to 1, `points` \
         percentage points.\n",
    );
    for t in TABLES
        .iter()
        .filter(|t| job.is_none_or(|j| t.jobs.contains(&j)))
    {
        let _ = write!(
            s,
            "\n### {}: one row per {}\n\n| column | unit | meaning |\n|---|---|---|\n",
            t.name, t.row
        );
        for c in t.columns {
            let _ = writeln!(s, "| `{}` | {} | {} |", c.name, c.unit, c.description);
        }
    }
    s
}

/// The marker line before a rendered reference in a Markdown file; the
/// rendered text runs to [`END_MARKER`]. `--job J` in the marker limits it
/// to the tables of job J.
pub const BEGIN_MARKER: &str = "<!-- custval describe --markdown";

/// The marker line after a rendered reference.
pub const END_MARKER: &str = "<!-- end of custval describe --markdown -->";

/// `doc` with the text between each [`BEGIN_MARKER`] line and the next
/// [`END_MARKER`] replaced by [`markdown`] (for the job its marker names);
/// `None` when `doc` has no such pair.
pub fn render_into(doc: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = doc;
    let mut found = false;
    while let Some(begin) = rest.find(BEGIN_MARKER) {
        let line_end = begin + rest[begin..].find('\n')? + 1;
        let end = line_end + rest[line_end..].find(END_MARKER)?;
        let marker = &rest[begin..line_end];
        let job = marker
            .split_once("--job ")
            .and_then(|(_, j)| j.split_whitespace().next());
        out.push_str(&rest[..line_end]);
        out.push('\n');
        out.push_str(&markdown(job));
        out.push('\n');
        rest = &rest[end..];
        found = true;
    }
    out.push_str(rest);
    found.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn repo_file(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::read_to_string(&path).unwrap()
    }

    /// README.md and the starter project's README (what `custval init`
    /// writes) hold exactly the rendered reference; `scripts/render-column-docs`
    /// (this test with CUSTVAL_RENDER_DOCS=1) rewrites them.
    #[test]
    fn the_readmes_match_the_column_docs() {
        for name in ["README.md", "jobs/starter/README.md"] {
            let text = repo_file(name);
            let rendered = render_into(&text).unwrap_or_else(|| panic!("{name}: no markers"));
            if std::env::var_os("CUSTVAL_RENDER_DOCS").is_some() {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
                std::fs::write(path, &rendered).unwrap();
                continue;
            }
            assert!(
                rendered == text,
                "{name} differs from `custval describe --markdown`: run scripts/render-column-docs"
            );
        }
    }

    #[test]
    fn every_column_is_documented_once_and_in_full() {
        for t in TABLES {
            assert!(!t.columns.is_empty(), "{}", t.name);
            for (i, c) in t.columns.iter().enumerate() {
                assert!(
                    !c.name.is_empty() && !c.unit.is_empty(),
                    "{}.{}",
                    t.name,
                    c.name
                );
                assert!(c.description.len() > 8, "{}.{}", t.name, c.name);
                assert!(
                    !c.description.contains('|'),
                    "{}.{}: breaks the Markdown table",
                    t.name,
                    c.name
                );
                assert!(
                    !t.columns[..i].iter().any(|o| o.name == c.name),
                    "{}.{} twice",
                    t.name,
                    c.name
                );
            }
        }
    }

    #[test]
    fn annotate_adds_description_and_unit_and_leaves_the_rest() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("recency", DataType::Float64, true),
            Field::new("custom", DataType::Utf8, true),
        ]));
        let a = annotate("customer_tiers", &schema);
        let f = a.field(0).metadata();
        assert_eq!(f[UNIT_KEY], "time_unit");
        assert_eq!(
            f[DESCRIPTION_KEY],
            "time from the first to the last purchase day"
        );
        assert!(a.field(1).metadata().is_empty());
        assert_eq!(annotate("not_a_table", &schema), schema);
    }

    #[test]
    fn describe_names_the_known_tables_for_an_unknown_one() {
        let text = describe("customer_tiers").unwrap();
        assert!(text.contains("tier_changed_at"), "{text}");
        let err = describe("tiers").unwrap_err().to_string();
        assert!(
            err.contains("customer_tiers") && err.contains("\"tiers\""),
            "{err}"
        );
    }
}
