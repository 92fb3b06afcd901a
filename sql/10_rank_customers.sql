-- Step: the customer tier table a CRM imports.
-- Inputs: customer_scores, wallet_estimates, previous_customer_tiers (customer_id, tier)
-- Output: customer_tiers (SPEC.md columns plus margin, value_total, spend_12m,
--         wallet_headroom, at_risk)
-- Params: $platinum_fraction, $gold_fraction, $silver_fraction (top shares by CLV),
--         $at_risk_p_alive, $pareto_a, $pareto_b (cumulative value shares)
-- Tiers rank customers by CLV (by historical value when no model could be fitted);
-- a historically valuable customer (top platinum+gold share by value) whose
-- p_alive fell below $at_risk_p_alive is 'At risk'. revenue_share is NULL when
-- total revenue is not positive; pareto_class is NULL when the total value is not.
-- Totals come from a one-row aggregate, and cumulative distributions from
-- running counts (the default RANGE frame counts peers, as cume_dist does):
-- DataFusion buffers windows over a whole partition (sum() OVER (),
-- cume_dist()) and emits them as one batch the size of the table, which
-- the next sort cannot reserve at 100M transactions. Running windows stream.
WITH totals AS (
  SELECT
    sum(value_total) AS total_value,
    sum(revenue) AS total_revenue,
    CAST(count(*) AS DOUBLE) AS customers
  FROM customer_scores
), base AS (
  SELECT
    s.*,
    w.spend_12m,
    w.wallet,
    tt.total_value,
    tt.total_revenue,
    tt.customers
  FROM customer_scores s
  LEFT JOIN wallet_estimates w ON w.customer_id = s.customer_id
  CROSS JOIN totals tt
), ranked AS (
  SELECT
    *,
    count(*) OVER (ORDER BY clv DESC NULLS LAST) / customers AS clv_rank,
    count(*) OVER (ORDER BY value_total DESC) / customers AS value_rank,
    sum(value_total) OVER (ORDER BY value_total DESC, customer_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS value_before
  FROM base
), tiered AS (
  SELECT
    *,
    CASE WHEN clv IS NULL THEN value_rank ELSE clv_rank END AS tier_rank,
    (value_rank <= CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
      AND p_alive < CAST($at_risk_p_alive AS DOUBLE)) AS at_risk
  FROM ranked
)
SELECT
  t.customer_id,
  t.first_purchase,
  t.last_purchase,
  t.orders,
  t.revenue,
  t.margin,
  t.value_total,
  t.frequency,
  t.recency,
  t.t,
  t.monetary_value,
  t.p_alive,
  t.expected_purchases,
  t.expected_avg_value,
  t.clv,
  CASE WHEN t.total_revenue > 0 THEN t.revenue / t.total_revenue END AS revenue_share,
  CASE
    WHEN NOT (t.total_value > 0) THEN NULL
    WHEN coalesce(t.value_before, 0.0) < CAST($pareto_a AS DOUBLE) * t.total_value THEN 'A'
    WHEN coalesce(t.value_before, 0.0) < CAST($pareto_b AS DOUBLE) * t.total_value THEN 'B'
    ELSE 'C'
  END AS pareto_class,
  t.spend_12m,
  t.wallet,
  CASE WHEN t.wallet > 0 THEN least(1.0, greatest(t.spend_12m, 0.0) / t.wallet) END AS share_of_wallet,
  greatest(t.wallet - greatest(t.spend_12m, 0.0), 0.0) AS wallet_headroom,
  coalesce(t.at_risk, false) AS at_risk,
  CASE
    WHEN coalesce(t.at_risk, false) THEN 'At risk'
    WHEN t.tier_rank <= CAST($platinum_fraction AS DOUBLE) THEN 'Platinum'
    WHEN t.tier_rank <= CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE) THEN 'Gold'
    WHEN t.tier_rank <= CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
                        + CAST($silver_fraction AS DOUBLE) THEN 'Silver'
    ELSE 'Bronze'
  END AS tier,
  p.tier AS previous_tier
FROM tiered t
LEFT JOIN previous_customer_tiers p ON p.customer_id = CAST(t.customer_id AS VARCHAR)
