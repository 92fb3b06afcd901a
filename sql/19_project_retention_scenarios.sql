-- Step: retention what-if. For each uplift of k retention points, the change in
-- expected CLV and expected purchases over the horizon, per tier and in total,
-- with the fitted BG/NBD model's dropout lowered.
-- Inputs: customer_tiers (tier, RFM, clv, expected_purchases), model_params
-- Output: retention_scenarios (uplift_points; tier, or 'Total' for all customers;
--         clv_base = summed clv; clv_scenario = summed CLV with the lowered
--         dropout; clv_gain = clv_scenario - clv_base; clv_gain_share = clv_gain /
--         clv_base (NULL when clv_base is not positive); purchases_gain = summed
--         change of expected_purchases). The scenario columns are NULL for an
--         uplift of at least the mean dropout probability, or when a fit
--         did not converge (see below).
-- Params: $retention_uplift_points (comma-separated points, e.g. '1,5,10'),
--         $horizon_months, $monthly_discount_rate, $time_units_per_month, $model
-- Functions: clv, bgnbd_expected_purchases
-- Mapping of "k retention points" to BG/NBD: after each purchase a customer
-- drops out with probability p, p ~ Beta(a, b) across customers, so the mean
-- survival at a purchase is 1 - a / (a + b). k points more retention raise
-- that mean survival by k / 100: the Beta keeps its concentration a + b (how
-- much customers differ) and its mean drops by k / 100:
--   a' = a - k/100 (a + b),   b' = b + k/100 (a + b).
-- r, alpha (purchase rates) and the Gamma-Gamma spend model are unchanged;
-- every customer is re-scored (their own frequency, recency, T: the posterior
-- of p given the history is Beta(a', b' + x)). Without a' > 0 (k/100 at
-- least the mean dropout a / (a + b)) no Beta has that mean: NULL, not a clamp.
-- Only converged BG/NBD and Gamma-Gamma fits are varied (allow_unconverged
-- publishes the base tables of fits that are not an optimum; a what-if on
-- them means nothing): otherwise the scenario columns are NULL too. The
-- mapping is BG/NBD's: with another purchase model driving the scores
-- ($model) the scenario columns are NULL.
WITH uplifts AS (
  SELECT DISTINCT CAST(trim(u) AS DOUBLE) AS uplift_points
  FROM (SELECT unnest(string_to_array($retention_uplift_points, ',')) AS u)
), scenarios AS (
  SELECT
    u.uplift_points,
    m.gamma_gamma,
    named_struct(
      'r', m.bgnbd.r,
      'alpha', m.bgnbd.alpha,
      'a', m.bgnbd.a - u.uplift_points / 100.0 * (m.bgnbd.a + m.bgnbd.b),
      'b', m.bgnbd.b + u.uplift_points / 100.0 * (m.bgnbd.a + m.bgnbd.b)) AS bgnbd
  FROM uplifts u CROSS JOIN model_params m
  WHERE $model = 'bgnbd' AND m.bgnbd.converged AND m.gamma_gamma.converged
    AND m.bgnbd.a - u.uplift_points / 100.0 * (m.bgnbd.a + m.bgnbd.b) > 0
), scored AS (
  SELECT
    s.uplift_points,
    c.tier,
    clv(s.bgnbd, s.gamma_gamma, c.frequency, c.recency, c.t, c.monetary_value,
        CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
        CAST($time_units_per_month AS DOUBLE)) AS clv_scenario,
    bgnbd_expected_purchases(
      s.bgnbd,
      CAST($horizon_months AS DOUBLE) * CAST($time_units_per_month AS DOUBLE),
      c.frequency, c.recency, c.t) - c.expected_purchases AS purchases_gain
  FROM scenarios s CROSS JOIN customer_tiers c
), gains AS (
  SELECT uplift_points, tier, sum(clv_scenario) AS clv_scenario, sum(purchases_gain) AS purchases_gain
  FROM scored GROUP BY uplift_points, tier
  UNION ALL
  SELECT uplift_points, 'Total', sum(clv_scenario), sum(purchases_gain)
  FROM scored GROUP BY uplift_points
), base AS (
  SELECT tier, sum(clv) AS clv_base FROM customer_tiers GROUP BY tier
  UNION ALL
  SELECT 'Total', sum(clv) FROM customer_tiers
)
SELECT
  u.uplift_points,
  b.tier,
  b.clv_base,
  g.clv_scenario,
  g.clv_scenario - b.clv_base AS clv_gain,
  CASE WHEN b.clv_base > 0 THEN (g.clv_scenario - b.clv_base) / b.clv_base END AS clv_gain_share,
  g.purchases_gain
FROM uplifts u
CROSS JOIN base b
LEFT JOIN gains g ON g.uplift_points = u.uplift_points AND g.tier = b.tier
