-- Step: the per-customer inputs of the wallet estimate, from one grouping of
-- the clean transactions. The estimate reads its features five times (the
-- fit, the line, the frequency bands, the calibration, the result) and
-- DataFusion plans a CTE again for each reference: when the grouping was a
-- CTE of the estimate, its plan scanned and grouped the transactions five
-- times (BENCHMARKS.md, "Profile of the nightly job": 58 of the job's 200 s
-- at 13M rows).
-- Runs between 08_score_customers and 09_estimate_wallets; numbered after the
-- files that were there first, so that jobs naming builtin:09 and later keep
-- their names (a job that names builtin:09 without this step gets it from the
-- built-in registry).
-- Inputs: transactions_clean, customer_scores
-- Output: wallet_features, one row per customer of transactions_clean:
--         customer_id, peer_group (the customer's largest peer_group value),
--         spend_12m (value of the 12 calendar months ending at $as_of; 0
--         without any), categories (distinct non-NULL categories bought),
--         frequency and t (customer_scores'; NULL for a customer without scores)
-- Params: $as_of (DATE). Units: the measured value; t in the job's time unit.
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
)
SELECT
  r.customer_id,
  r.peer_group,
  r.spend_12m,
  r.categories,
  s.frequency,
  s.t
FROM recent r
LEFT JOIN customer_scores s ON s.customer_id = r.customer_id
