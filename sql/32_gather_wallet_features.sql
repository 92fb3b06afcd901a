-- Step: the per-customer features of the wallet estimate, from one grouping
-- of the clean transactions. The estimate reads its features five times (the
-- fit, the line, the frequency bands, the calibration, the result) and
-- DataFusion plans a CTE again for each reference: when this grouping was a
-- CTE of the estimate, its plan scanned and grouped the transactions five
-- times (BENCHMARKS.md, "Profile of the nightly job": 58 of the job's 200 s
-- at 13M rows). Here `recent` is read twice (the peer groups' quantile and
-- the features), so the grouping runs twice; computing the peer quantile in
-- the estimate instead would run it once, but it adds the 12-month spends in
-- another order, and the wallet fit moved by up to 4e-4 relative on 1M
-- customers for such last-bit differences (run on the generator's 13M rows).
-- Runs between 08_score_customers and 09_estimate_wallets; numbered after the
-- files that were there first, so that jobs naming builtin:09 and later keep
-- their names (a job that names builtin:09 without this step gets it from the
-- built-in registry, see src/builtin.rs).
-- Inputs: transactions_clean, customer_scores
-- Output: wallet_features, one row per customer of transactions_clean:
--         customer_id, spend_12m (value of the 12 calendar months ending at
--         $as_of; 0 without any), peer_wallet (the $wallet_quantile of
--         spend_12m, negatives as 0, among the customer's peer group:
--         everyone without a peer_group), x_frequency, x_t, x_categories,
--         x_peer: ln(1 + frequency), ln(1 + t) (customer_scores'; NULL without
--         scores), ln(1 + distinct non-NULL categories bought), ln(1 +
--         peer_wallet)
-- Params: $as_of (DATE), $wallet_quantile. Units: the measured value; t in the
--         job's time unit.
-- Functions: none.
WITH per_category AS (
  -- Categories bought are counted from (customer, category) groups, not
  -- with count(DISTINCT category) per customer: DataFusion keeps a hash set
  -- per group for a DISTINCT aggregate, which its memory pool does not bound
  -- (300,000 customers: 15.7 GB with a 4 GiB pool; 1M: killed). Two grouped
  -- aggregates stay within the pool and spill.
  SELECT
    customer_id,
    category,
    max(peer_group) AS peer_group,
    -- The 12 calendar months ending at $as_of: after as_of - 12 months
    -- (2023-07-01..2024-06-30 for 2024-06-30), leap days included.
    sum(value) FILTER (WHERE order_ts > CAST($as_of AS DATE) - INTERVAL '12 months') AS spend_12m
  FROM transactions_clean
  GROUP BY customer_id, category
), recent AS (
  SELECT
    customer_id,
    max(peer_group) AS peer_group,
    coalesce(sum(spend_12m), 0.0) AS spend_12m,
    -- count(category) skips the NULL category, as count(DISTINCT) did.
    count(category) AS categories
  FROM per_category
  GROUP BY customer_id
), peers AS (
  SELECT
    coalesce(peer_group, '') AS peer_group,
    percentile_cont(CAST($wallet_quantile AS DOUBLE)) WITHIN GROUP (ORDER BY greatest(spend_12m, 0.0)) AS peer_wallet
  FROM recent
  GROUP BY coalesce(peer_group, '')
), features AS (
  SELECT
    r.customer_id,
    r.spend_12m,
    p.peer_wallet,
    ln(1.0 + s.frequency) AS x_frequency,
    ln(1.0 + s.t) AS x_t,
    ln(1.0 + r.categories) AS x_categories,
    ln(1.0 + greatest(p.peer_wallet, 0.0)) AS x_peer
  FROM recent r
  LEFT JOIN peers p ON coalesce(r.peer_group, '') = p.peer_group
  LEFT JOIN customer_scores s ON s.customer_id = r.customer_id
)
SELECT * FROM features
