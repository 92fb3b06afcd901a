//! The SQL steps and gates shipped in `sql/`, built into the binary: the one
//! registry of them. A job names one as `sql = "builtin:06_measure_rfm.sql"`
//! ([`resolve`]), so a job copied out of the repository keeps working and
//! picks up the steps of the custval that runs it; the demo's built-in
//! nightly job reads its `../sql/` files from here too.

/// How a job file names a built-in SQL file: `builtin:<file name>`.
pub const PREFIX: &str = "builtin:";

/// Every file of `sql/`, by file name, with its text.
pub const SQL: &[(&str, &str)] = &[
    (
        "01_validate_transactions.sql",
        include_str!("../sql/01_validate_transactions.sql"),
    ),
    (
        "02_clean_transactions.sql",
        include_str!("../sql/02_clean_transactions.sql"),
    ),
    (
        "03_count_quality.sql",
        include_str!("../sql/03_count_quality.sql"),
    ),
    (
        "04_select_rejected_rows.sql",
        include_str!("../sql/04_select_rejected_rows.sql"),
    ),
    (
        "05_summarise_customers.sql",
        include_str!("../sql/05_summarise_customers.sql"),
    ),
    (
        "06_measure_rfm.sql",
        include_str!("../sql/06_measure_rfm.sql"),
    ),
    (
        "07_fit_models.sql",
        include_str!("../sql/07_fit_models.sql"),
    ),
    (
        "08_score_customers.sql",
        include_str!("../sql/08_score_customers.sql"),
    ),
    (
        "09_estimate_wallets.sql",
        include_str!("../sql/09_estimate_wallets.sql"),
    ),
    (
        "10_rank_customers.sql",
        include_str!("../sql/10_rank_customers.sql"),
    ),
    (
        "11_build_model_fit.sql",
        include_str!("../sql/11_build_model_fit.sql"),
    ),
    (
        "12_measure_concentration.sql",
        include_str!("../sql/12_measure_concentration.sql"),
    ),
    (
        "13_tag_customer_months.sql",
        include_str!("../sql/13_tag_customer_months.sql"),
    ),
    (
        "14_build_retention_cohorts.sql",
        include_str!("../sql/14_build_retention_cohorts.sql"),
    ),
    (
        "15_build_retention_rates.sql",
        include_str!("../sql/15_build_retention_rates.sql"),
    ),
    (
        "16_sum_category_spend.sql",
        include_str!("../sql/16_sum_category_spend.sql"),
    ),
    (
        "17_share_categories.sql",
        include_str!("../sql/17_share_categories.sql"),
    ),
    (
        "18_count_tier_transitions.sql",
        include_str!("../sql/18_count_tier_transitions.sql"),
    ),
    (
        "19_project_retention_scenarios.sql",
        include_str!("../sql/19_project_retention_scenarios.sql"),
    ),
    (
        "20_count_subscription_survivors.sql",
        include_str!("../sql/20_count_subscription_survivors.sql"),
    ),
    (
        "21_fit_subscription_cohorts.sql",
        include_str!("../sql/21_fit_subscription_cohorts.sql"),
    ),
    (
        "22_project_subscription_survival.sql",
        include_str!("../sql/22_project_subscription_survival.sql"),
    ),
    (
        "23_build_subscription_fit.sql",
        include_str!("../sql/23_build_subscription_fit.sql"),
    ),
    (
        "24_summarise_customer_parts.sql",
        include_str!("../sql/24_summarise_customer_parts.sql"),
    ),
    (
        "25_fold_customer_state.sql",
        include_str!("../sql/25_fold_customer_state.sql"),
    ),
    (
        "26_merge_customer_summary.sql",
        include_str!("../sql/26_merge_customer_summary.sql"),
    ),
    (
        "27_list_order_parts.sql",
        include_str!("../sql/27_list_order_parts.sql"),
    ),
    (
        "28_fold_order_state.sql",
        include_str!("../sql/28_fold_order_state.sql"),
    ),
    (
        "29_tag_customer_month_parts.sql",
        include_str!("../sql/29_tag_customer_month_parts.sql"),
    ),
    (
        "30_fold_customer_month_state.sql",
        include_str!("../sql/30_fold_customer_month_state.sql"),
    ),
    (
        "31_merge_customer_months.sql",
        include_str!("../sql/31_merge_customer_months.sql"),
    ),
    (
        "32_gather_wallet_features.sql",
        include_str!("../sql/32_gather_wallet_features.sql"),
    ),
    (
        "90_check_transactions_present.sql",
        include_str!("../sql/90_check_transactions_present.sql"),
    ),
    (
        "91_check_rejected_fraction.sql",
        include_str!("../sql/91_check_rejected_fraction.sql"),
    ),
    (
        "92_check_model_convergence.sql",
        include_str!("../sql/92_check_model_convergence.sql"),
    ),
    (
        "93_check_customers_present.sql",
        include_str!("../sql/93_check_customers_present.sql"),
    ),
    (
        "94_check_freshness.sql",
        include_str!("../sql/94_check_freshness.sql"),
    ),
];

/// What a built-in step needs from the job that names it, beyond the
/// tables it reads: so that a job written for an earlier custval (by an
/// earlier `custval init`) keeps running when a built-in step grows.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// The built-in file's name.
    pub file: &'static str,
    /// Parameters and the default (a TOML literal) a job that does not
    /// declare one gets.
    pub params: &'static [(&'static str, &'static str)],
    /// Columns of the previous partition (`previous`) of the output this
    /// step feeds.
    pub previous: &'static [&'static str],
    /// Steps this one reads that an earlier custval's job did not have:
    /// a job without a step of that name gets it, just before this one.
    pub steps: &'static [NeededStep],
}

/// A built-in step another built-in step reads, added to a job that lacks it.
#[derive(Debug, Clone, Copy)]
pub struct NeededStep {
    /// The step's (and so the table's) name.
    pub name: &'static str,
    /// The built-in file's name (without [`PREFIX`]).
    pub file: &'static str,
    /// Whether it is materialized (see `job::StepSpec::materialize`).
    pub materialize: bool,
}

/// The needs of the built-in steps that have any beyond what every
/// version of the starter job declares.
pub const NEEDS: &[Needs] = &[
    Needs {
        file: "08_score_customers.sql",
        params: &[("interval", "0.9")],
        previous: &[],
        steps: &[],
    },
    Needs {
        file: "09_estimate_wallets.sql",
        params: &[("wallet_method", "\"model\"")],
        previous: &[],
        // Its per-customer inputs became their own step (the estimate
        // reads them five times).
        steps: &[NeededStep {
            name: "wallet_features",
            file: "32_gather_wallet_features.sql",
            materialize: true,
        }],
    },
    Needs {
        file: "10_rank_customers.sql",
        params: &[("tier_hysteresis", "0.02"), ("tier_min_nights", "3")],
        previous: &[
            "customer_id",
            "tier",
            "tier_changed_at",
            "tier_pending_nights",
        ],
        steps: &[],
    },
    Needs {
        file: "19_project_retention_scenarios.sql",
        params: &[("retention_uplift_points", "\"1,5,10\"")],
        previous: &[],
        steps: &[],
    },
];

/// The needs of a job's `sql` reference, when it is a built-in file that has any.
pub fn needs(file: &str) -> Option<&'static Needs> {
    let name = file.strip_prefix(PREFIX)?;
    NEEDS.iter().find(|n| n.file == name)
}

/// The text of the built-in SQL file `name` (a file name of `sql/`).
pub fn sql(name: &str) -> Option<&'static str> {
    SQL.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
}

/// A job's `builtin:NAME` reference resolved: `None` when `file` is not a
/// built-in reference, `Some(Err(names))` when it names no built-in file
/// (with the names there are, for the message).
pub fn resolve(file: &str) -> Option<Result<&'static str, String>> {
    let name = file.strip_prefix(PREFIX)?;
    Some(sql(name).ok_or_else(|| {
        let names: Vec<&str> = SQL.iter().map(|(n, _)| *n).collect();
        format!(
            "{file}: no built-in SQL file {name:?} (built in: {})",
            names.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry is `sql/`, every file and nothing else, text for text.
    #[test]
    fn every_sql_file_is_built_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let mut built_in: Vec<(String, String)> = SQL
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        built_in.sort();
        assert_eq!(on_disk, built_in);
    }

    #[test]
    fn references_resolve_or_name_the_choices() {
        assert_eq!(
            resolve("builtin:06_measure_rfm.sql"),
            Some(Ok(include_str!("../sql/06_measure_rfm.sql")))
        );
        assert_eq!(resolve("../sql/06_measure_rfm.sql"), None);
        let err = resolve("builtin:06_rfm.sql").unwrap().unwrap_err();
        assert!(
            err.contains("06_rfm.sql") && err.contains("06_measure_rfm.sql"),
            "{err}"
        );
    }
}
