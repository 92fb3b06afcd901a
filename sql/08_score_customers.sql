-- Step: per-customer predictions from the fitted models.
-- Inputs: rfm, model_params
-- Output: customer_scores = rfm + p_alive, expected_purchases (repeat purchases in
--         the next $horizon_months months), expected_avg_value, clv (discounted),
--         all from the purchase model $model; clv_low, clv_high (the $interval
--         interval of clv over the fitted parameters' sampling distribution:
--         delta method on ln clv, see src/udf/clv.rs; NULL with $interval = 0,
--         without a covariance, or when unbounded), holdout_predicted (repeat
--         purchases $model's calibration fit expects in the holdout)
-- Functions: <model>_p_alive, <model>_expected_purchases, gamma_gamma_expected_value,
--            clv_interval, pareto_nbd_clv_interval, mbgnbd_clv_interval (each
--            the struct clv, low, high)
-- Params: $model (bgnbd, pareto_nbd or mbgnbd), $interval (level, 0: none), $horizon_months,
--         $monthly_discount_rate, $time_units_per_month (30 days or 4.345 weeks),
--         $holdout_days, $time_unit_days
-- A customer whose repeat purchases net to zero or less gets the population mean spend.
-- clv, clv_low and clv_high are the fields of one evaluation per customer (the
-- CLV and its interval share their terms): DataFusion does not inline an
-- expression the outer SELECT reads more than once.
WITH scored AS (
SELECT
  r.*,
  CASE $model
    WHEN 'pareto_nbd' THEN pareto_nbd_p_alive(m.pareto_nbd, r.frequency, r.recency, r.t)
    WHEN 'mbgnbd' THEN mbgnbd_p_alive(m.mbgnbd, r.frequency, r.recency, r.t)
    ELSE bgnbd_p_alive(m.bgnbd, r.frequency, r.recency, r.t)
  END AS p_alive,
  CASE $model
    WHEN 'pareto_nbd' THEN pareto_nbd_expected_purchases(m.pareto_nbd,
      CAST($horizon_months AS DOUBLE) * CAST($time_units_per_month AS DOUBLE),
      r.frequency, r.recency, r.t)
    WHEN 'mbgnbd' THEN mbgnbd_expected_purchases(m.mbgnbd,
      CAST($horizon_months AS DOUBLE) * CAST($time_units_per_month AS DOUBLE),
      r.frequency, r.recency, r.t)
    ELSE bgnbd_expected_purchases(m.bgnbd,
      CAST($horizon_months AS DOUBLE) * CAST($time_units_per_month AS DOUBLE),
      r.frequency, r.recency, r.t)
  END AS expected_purchases,
  gamma_gamma_expected_value(
    m.gamma_gamma,
    CASE WHEN r.monetary_value > 0 THEN r.frequency ELSE 0 END,
    greatest(r.monetary_value, 0.0)) AS expected_avg_value,
  CASE $model
    WHEN 'pareto_nbd' THEN pareto_nbd_clv_interval(m.pareto_nbd, m.gamma_gamma, r.frequency,
      r.recency, r.t, r.monetary_value, CAST($horizon_months AS DOUBLE),
      CAST($monthly_discount_rate AS DOUBLE), CAST($time_units_per_month AS DOUBLE),
      CAST($interval AS DOUBLE))
    WHEN 'mbgnbd' THEN mbgnbd_clv_interval(m.mbgnbd, m.gamma_gamma, r.frequency,
      r.recency, r.t, r.monetary_value, CAST($horizon_months AS DOUBLE),
      CAST($monthly_discount_rate AS DOUBLE), CAST($time_units_per_month AS DOUBLE),
      CAST($interval AS DOUBLE))
    ELSE clv_interval(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t,
      r.monetary_value, CAST($horizon_months AS DOUBLE),
      CAST($monthly_discount_rate AS DOUBLE), CAST($time_units_per_month AS DOUBLE),
      CAST($interval AS DOUBLE))
  END AS clv_and_interval,
  CASE WHEN r.cal_frequency >= 0 THEN
    CASE $model
      WHEN 'pareto_nbd' THEN pareto_nbd_expected_purchases(m.pareto_nbd_calibration,
        CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
        r.cal_frequency, r.cal_recency, r.cal_t)
      WHEN 'mbgnbd' THEN mbgnbd_expected_purchases(m.mbgnbd_calibration,
        CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
        r.cal_frequency, r.cal_recency, r.cal_t)
      ELSE bgnbd_expected_purchases(m.bgnbd_calibration,
        CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
        r.cal_frequency, r.cal_recency, r.cal_t)
    END
  END AS holdout_predicted
FROM rfm r CROSS JOIN model_params m
)
SELECT
  * EXCEPT (clv_and_interval, holdout_predicted),
  clv_and_interval['clv'] AS clv,
  clv_and_interval['low'] AS clv_low,
  clv_and_interval['high'] AS clv_high,
  holdout_predicted
FROM scored
