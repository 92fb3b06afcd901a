-- Step: per-customer predictions from the fitted models.
-- Inputs: rfm, model_params
-- Output: customer_scores = rfm + p_alive, expected_purchases (repeat purchases in
--         the next $horizon_months months), expected_avg_value, clv (discounted),
--         clv_low, clv_high (the $interval interval of clv over the fitted parameters'
--         sampling distribution: delta method on ln clv, see src/udf/clv.rs),
--         holdout_predicted (repeat purchases the calibration fit expects in the holdout)
-- Functions: bgnbd_p_alive, bgnbd_expected_purchases, gamma_gamma_expected_value, clv,
--            clv_low, clv_high
-- Params: $interval, $horizon_months, $monthly_discount_rate, $time_units_per_month (30 days or 4.345 weeks),
--         $holdout_days, $time_unit_days
-- A customer whose repeat purchases net to zero or less gets the population mean spend.
SELECT
  r.*,
  bgnbd_p_alive(m.bgnbd, r.frequency, r.recency, r.t) AS p_alive,
  bgnbd_expected_purchases(
    m.bgnbd,
    CAST($horizon_months AS DOUBLE) * CAST($time_units_per_month AS DOUBLE),
    r.frequency, r.recency, r.t) AS expected_purchases,
  gamma_gamma_expected_value(
    m.gamma_gamma,
    CASE WHEN r.monetary_value > 0 THEN r.frequency ELSE 0 END,
    greatest(r.monetary_value, 0.0)) AS expected_avg_value,
  clv(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t, r.monetary_value,
      CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
      CAST($time_units_per_month AS DOUBLE)) AS clv,
  clv_low(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t, r.monetary_value,
      CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
      CAST($time_units_per_month AS DOUBLE), CAST($interval AS DOUBLE)) AS clv_low,
  clv_high(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t, r.monetary_value,
      CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
      CAST($time_units_per_month AS DOUBLE), CAST($interval AS DOUBLE)) AS clv_high,
  CASE WHEN r.cal_frequency >= 0 THEN
    bgnbd_expected_purchases(m.bgnbd_calibration,
      CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
      r.cal_frequency, r.cal_recency, r.cal_t)
  END AS holdout_predicted
FROM rfm r CROSS JOIN model_params m
