-- Step: the customer tier table a CRM imports.
-- Inputs: customer_scores, wallet_estimates, previous_customer_tiers (customer_id,
--         tier, tier_changed_at, tier_pending_nights, as text: the latest earlier
--         published partition; empty on a first run, NULL columns it lacks)
-- Output: customer_tiers (SPEC.md columns plus clv_low, clv_high, margin, value_total, spend_12m,
--         wallet_source, wallet_headroom, at_risk, tier_changed_at, rank_tier, tier_pending_nights)
-- Params: $platinum_fraction, $gold_fraction, $silver_fraction (top shares by CLV),
--         $at_risk_p_alive, $pareto_a, $pareto_b (cumulative value shares),
--         $tier_hysteresis (share of the population), $tier_min_nights (runs), $as_of
-- Hysteresis: rank_tier is the tier the rank alone gives tonight. A customer
-- keeps last run's tier while their rank stays within $tier_hysteresis of that
-- tier's band (e.g. Gold, ranks 0.05 to 0.20, is kept from 0.03 to 0.22 with the
-- default 0.02), until rank_tier has differed from it for $tier_min_nights
-- consecutive runs (tier_pending_nights counts them). Beyond the margin, or
-- for a customer without a previous tier (a first run, a new customer), or
-- into and out of 'At risk' (a p_alive rule, not a rank), the tier is
-- rank_tier at once. $tier_hysteresis = 0 or $tier_min_nights = 1 turns it off.
-- tier_changed_at: the as-of date of the run that gave the current tier (NULL
-- when it was carried over from a partition that did not record it).
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
    w.wallet_source,
    w.wallet_calibration,
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
), banded AS (
  SELECT
    t.*,
    CASE
      WHEN coalesce(t.at_risk, false) THEN 'At risk'
      WHEN t.tier_rank <= CAST($platinum_fraction AS DOUBLE) THEN 'Platinum'
      WHEN t.tier_rank <= CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE) THEN 'Gold'
      WHEN t.tier_rank <= CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
                          + CAST($silver_fraction AS DOUBLE) THEN 'Silver'
      ELSE 'Bronze'
    END AS rank_tier,
    p.tier AS previous_tier,
    CAST(p.tier_changed_at AS DATE) AS previous_changed_at,
    coalesce(CAST(p.tier_pending_nights AS BIGINT), 0) AS previous_pending,
    -- The previous tier's band of ranks, (lo, hi]; NULL for 'At risk' or none.
    CASE p.tier
      WHEN 'Platinum' THEN 0.0
      WHEN 'Gold' THEN CAST($platinum_fraction AS DOUBLE)
      WHEN 'Silver' THEN CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
      WHEN 'Bronze' THEN CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
                         + CAST($silver_fraction AS DOUBLE)
    END AS band_lo,
    CASE p.tier
      WHEN 'Platinum' THEN CAST($platinum_fraction AS DOUBLE)
      WHEN 'Gold' THEN CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
      WHEN 'Silver' THEN CAST($platinum_fraction AS DOUBLE) + CAST($gold_fraction AS DOUBLE)
                         + CAST($silver_fraction AS DOUBLE)
      WHEN 'Bronze' THEN 1.0
    END AS band_hi
  FROM tiered t
  LEFT JOIN previous_customer_tiers p ON p.customer_id = CAST(t.customer_id AS VARCHAR)
), pending AS (
  SELECT
    *,
    -- Consecutive runs, this one included, in which rank_tier differs from the
    -- tier kept.
    CASE WHEN previous_tier IS NULL OR rank_tier = previous_tier THEN 0
         ELSE previous_pending + 1 END AS pending,
    NOT coalesce(at_risk, false)
      AND band_lo IS NOT NULL
      AND tier_rank > band_lo - CAST($tier_hysteresis AS DOUBLE)
      AND tier_rank <= band_hi + CAST($tier_hysteresis AS DOUBLE) AS within_margin
  FROM banded
), kept AS (
  SELECT
    *,
    CASE WHEN within_margin AND pending < CAST($tier_min_nights AS BIGINT) THEN previous_tier
         ELSE rank_tier END AS tier
  FROM pending
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
  t.clv_low,
  t.clv_high,
  CASE WHEN t.total_revenue > 0 THEN t.revenue / t.total_revenue END AS revenue_share,
  CASE
    WHEN NOT (t.total_value > 0) THEN NULL
    WHEN coalesce(t.value_before, 0.0) < CAST($pareto_a AS DOUBLE) * t.total_value THEN 'A'
    WHEN coalesce(t.value_before, 0.0) < CAST($pareto_b AS DOUBLE) * t.total_value THEN 'B'
    ELSE 'C'
  END AS pareto_class,
  t.spend_12m,
  t.wallet,
  t.wallet_source,
  t.wallet_calibration,
  CASE WHEN t.wallet > 0 THEN least(1.0, greatest(t.spend_12m, 0.0) / t.wallet) END AS share_of_wallet,
  greatest(t.wallet - greatest(t.spend_12m, 0.0), 0.0) AS wallet_headroom,
  coalesce(t.at_risk, false) AS at_risk,
  t.rank_tier,
  t.tier,
  t.previous_tier,
  CASE WHEN t.previous_tier IS NOT NULL AND t.tier = t.previous_tier THEN t.previous_changed_at
       ELSE $as_of END AS tier_changed_at,
  CASE WHEN t.tier = t.rank_tier THEN 0 ELSE t.pending END AS tier_pending_nights
FROM kept t
