-- Step: fit the purchase models the job names and Gamma-Gamma by maximum
-- likelihood on the RFM summary.
-- Input:  rfm
-- Output: model_params (one row): bgnbd, pareto_nbd, mbgnbd (fit structs: the
--         parameters, log_likelihood, converged, iterations, status, at_bound;
--         NULL for a model not in $models), gamma_gamma (struct p, q, v,
--         v_over_q, ...), customers,
--         gg_customers (customers with frequency > 0 and positive spend),
--         <model>_calibration (each fitted model's fit on the calibration
--         period, NULL without a holdout)
-- Params: $models (the purchase models to fit, comma-separated, the one that
--         drives scores first), $holdout_days, $penalizer (L2 on the
--         log-parameters, 0: none)
-- Functions: bgnbd_fit, pareto_nbd_fit, mbgnbd_fit, gamma_gamma_fit.
-- Units: recency, t in the job's time unit. A fit over no rows is NULL.
SELECT
  bgnbd_fit(frequency, recency, t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE strpos(',' || $models || ',', ',bgnbd,') > 0) AS bgnbd,
  pareto_nbd_fit(frequency, recency, t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE strpos(',' || $models || ',', ',pareto_nbd,') > 0) AS pareto_nbd,
  mbgnbd_fit(frequency, recency, t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE strpos(',' || $models || ',', ',mbgnbd,') > 0) AS mbgnbd,
  gamma_gamma_fit(frequency, monetary_value, CAST($penalizer AS DOUBLE)) AS gamma_gamma,
  count(*) AS customers,
  count(*) FILTER (WHERE frequency > 0 AND monetary_value > 0) AS gg_customers,
  bgnbd_fit(cal_frequency, cal_recency, cal_t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE CAST($holdout_days AS BIGINT) > 0 AND cal_frequency >= 0
                  AND strpos(',' || $models || ',', ',bgnbd,') > 0) AS bgnbd_calibration,
  pareto_nbd_fit(cal_frequency, cal_recency, cal_t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE CAST($holdout_days AS BIGINT) > 0 AND cal_frequency >= 0
                  AND strpos(',' || $models || ',', ',pareto_nbd,') > 0) AS pareto_nbd_calibration,
  mbgnbd_fit(cal_frequency, cal_recency, cal_t, CAST($penalizer AS DOUBLE))
    FILTER (WHERE CAST($holdout_days AS BIGINT) > 0 AND cal_frequency >= 0
                  AND strpos(',' || $models || ',', ',mbgnbd,') > 0) AS mbgnbd_calibration
FROM rfm
