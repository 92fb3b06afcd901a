-- Step: fit BG/NBD and Gamma-Gamma by maximum likelihood on the RFM summary.
-- Input:  rfm
-- Output: model_params (one row): bgnbd (struct r, alpha, a, b, log_likelihood,
--         converged, iterations, status, at_bound), gamma_gamma (struct p, q, v,
--         v_over_q, ...), customers,
--         gg_customers (customers with frequency > 0 and positive spend),
--         bgnbd_calibration (the fit on the calibration period, NULL without a holdout)
-- Params: $holdout_days, $penalizer (L2 on the log-parameters, 0: none)
-- Functions: bgnbd_fit, gamma_gamma_fit. Units: recency, t in the job's time unit.
SELECT
  bgnbd_fit(frequency, recency, t, CAST($penalizer AS DOUBLE)) AS bgnbd,
  gamma_gamma_fit(frequency, monetary_value, CAST($penalizer AS DOUBLE)) AS gamma_gamma,
  count(*) AS customers,
  count(*) FILTER (WHERE frequency > 0 AND monetary_value > 0) AS gg_customers,
  bgnbd_fit(cal_frequency, cal_recency, cal_t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE CAST($holdout_days AS BIGINT) > 0 AND cal_frequency >= 0) AS bgnbd_calibration
FROM rfm
