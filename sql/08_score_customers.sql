-- Step: per-customer predictions from the fitted models.
-- Inputs: rfm, model_params
-- Output: customer_scores = rfm + p_alive, expected_purchases (repeat purchases in
--         the next $horizon_months months), expected_avg_value, clv (discounted),
--         all from the purchase model $model; clv_low, clv_high (the $interval
--         interval of clv over the fitted parameters' sampling distribution:
--         delta method on ln clv, see src/udf/clv.rs; BG/NBD only, NULL for
--         the other models), holdout_predicted (repeat purchases $model's
--         calibration fit expects in the holdout)
-- Functions: <model>_p_alive, <model>_expected_purchases, gamma_gamma_expected_value,
--            clv, pareto_nbd_clv, mbgnbd_clv, clv_low, clv_high
-- Params: $model (bgnbd, pareto_nbd or mbgnbd), $interval, $horizon_months,
--         $monthly_discount_rate, $time_units_per_month (30 days or 4.345 weeks),
--         $holdout_days, $time_unit_days
-- A customer whose repeat purchases net to zero or less gets the population mean spend.
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
    WHEN 'pareto_nbd' THEN pareto_nbd_clv(m.pareto_nbd, m.gamma_gamma, r.frequency, r.recency,
      r.t, r.monetary_value, CAST($horizon_months AS DOUBLE),
      CAST($monthly_discount_rate AS DOUBLE), CAST($time_units_per_month AS DOUBLE))
    WHEN 'mbgnbd' THEN mbgnbd_clv(m.mbgnbd, m.gamma_gamma, r.frequency, r.recency,
      r.t, r.monetary_value, CAST($horizon_months AS DOUBLE),
      CAST($monthly_discount_rate AS DOUBLE), CAST($time_units_per_month AS DOUBLE))
    ELSE clv(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t, r.monetary_value,
      CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
      CAST($time_units_per_month AS DOUBLE))
  END AS clv,
  CASE WHEN $model = 'bgnbd' THEN
    clv_low(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t, r.monetary_value,
      CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
      CAST($time_units_per_month AS DOUBLE), CAST($interval AS DOUBLE))
  END AS clv_low,
  CASE WHEN $model = 'bgnbd' THEN
    clv_high(m.bgnbd, m.gamma_gamma, r.frequency, r.recency, r.t, r.monetary_value,
      CAST($horizon_months AS DOUBLE), CAST($monthly_discount_rate AS DOUBLE),
      CAST($time_units_per_month AS DOUBLE), CAST($interval AS DOUBLE))
  END AS clv_high,
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
