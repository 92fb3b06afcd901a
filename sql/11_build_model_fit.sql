-- Step: one row per fitted model, flat, for monitoring and for comparing the
-- purchase models on the job's own data; with a holdout, each purchase
-- model's calibration fit's prediction of the holdout beside what happened.
-- Inputs: model_params, customer_scores
-- Output: model_fit (model, r, alpha, a, b, p, q, v, v_over_q, se_r, se_alpha, se_a, se_b,
--         se_p, se_q, se_v, se_v_over_q (standard errors: inverse observed information,
--         delta method; NULL for a parameter at its bound, see at_bound), log_likelihood, customers,
--         converged, iterations, status ('converged', 'boundary', or why not), at_bound
--         (for a boundary optimum: which parameters are at which bound, the limiting
--         model used; NULL otherwise), penalizer, time_unit, holdout_days, holdout_customers,
--         holdout_predicted, holdout_actual (repeat purchase days in the holdout),
--         holdout_mae (per customer), holdout_rank_correlation (Spearman, ties averaged),
--         s, beta (Pareto/NBD), se_s, se_beta, dropout, se_dropout (BG/NBD's and MBG/NBD's
--         a/(a+b); the one dropout probability of their limit a, b -> infinity, where a and b
--         are NULL; MBG/NBD has no standard error of dropout),
--         free_parameters, aic, bic, drives_scores)
--         A row per model in $models (bgnbd, pareto_nbd, mbgnbd), then gamma_gamma.
-- Params: $time_unit ('day' or 'week': the unit of alpha, beta, recency and t),
--         $holdout_days, $penalizer, $model (the model whose scores are published),
--         $time_unit_days
-- AIC = 2k - 2 LL and BIC = k ln(n) - 2 LL (n the customers fitted, k the free
-- parameters: 4, Gamma-Gamma 3; at a boundary optimum the limiting model's: 2,
-- or 3 in the one-dropout limit, a and b NULL beside dropout).
-- Average ranks from the distinct values: a value's rank is the count of
-- smaller values plus (its count + 1) / 2. Holdout purchases are a few small
-- integers shared by millions of customers; a RANGE frame over such ties
-- costs the tie group per row (19 s at 1.5M customers), a running sum over
-- the distinct values does not.
WITH preds AS (
  SELECT 'bgnbd' AS model,
         bgnbd_expected_purchases(m.bgnbd_calibration,
           CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
           c.cal_frequency, c.cal_recency, c.cal_t) AS pred,
         CAST(c.holdout_purchases AS DOUBLE) AS actual
  FROM customer_scores c CROSS JOIN model_params m
  WHERE c.cal_frequency >= 0 AND m.bgnbd_calibration IS NOT NULL
  UNION ALL
  SELECT 'pareto_nbd',
         pareto_nbd_expected_purchases(m.pareto_nbd_calibration,
           CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
           c.cal_frequency, c.cal_recency, c.cal_t),
         CAST(c.holdout_purchases AS DOUBLE)
  FROM customer_scores c CROSS JOIN model_params m
  WHERE c.cal_frequency >= 0 AND m.pareto_nbd_calibration IS NOT NULL
  UNION ALL
  SELECT 'mbgnbd',
         mbgnbd_expected_purchases(m.mbgnbd_calibration,
           CAST($holdout_days AS DOUBLE) / CAST($time_unit_days AS DOUBLE),
           c.cal_frequency, c.cal_recency, c.cal_t),
         CAST(c.holdout_purchases AS DOUBLE)
  FROM customer_scores c CROSS JOIN model_params m
  WHERE c.cal_frequency >= 0 AND m.mbgnbd_calibration IS NOT NULL
), h AS (
  SELECT model, pred, actual FROM preds WHERE pred IS NOT NULL
), pred_ranks AS (
  SELECT model, pred,
         sum(count(*)) OVER (PARTITION BY model ORDER BY pred ROWS UNBOUNDED PRECEDING)
           - (count(*) - 1) * 0.5 AS pred_rank
  FROM h GROUP BY model, pred
), actual_ranks AS (
  SELECT model, actual,
         sum(count(*)) OVER (PARTITION BY model ORDER BY actual ROWS UNBOUNDED PRECEDING)
           - (count(*) - 1) * 0.5 AS actual_rank
  FROM h GROUP BY model, actual
), ranked AS (
  SELECT h.model, h.pred, h.actual, p.pred_rank, a.actual_rank
  FROM h
  JOIN pred_ranks p ON h.model = p.model AND h.pred = p.pred
  JOIN actual_ranks a ON h.model = a.model AND h.actual = a.actual
), holdout AS (
  SELECT
    k.model,
    count(r.pred) AS customers,
    sum(r.pred) AS predicted,
    sum(r.actual) AS actual,
    avg(abs(r.pred - r.actual)) AS mae,
    corr(r.pred_rank, r.actual_rank) AS rank_correlation
  FROM (VALUES ('bgnbd'), ('pareto_nbd'), ('mbgnbd')) AS k(model)
  LEFT JOIN ranked r ON r.model = k.model
  GROUP BY k.model
), purchase AS (
  SELECT 'bgnbd' AS model,
         bgnbd['r'] AS r, bgnbd['alpha'] AS alpha, bgnbd['a'] AS a, bgnbd['b'] AS b,
         CAST(NULL AS DOUBLE) AS s, CAST(NULL AS DOUBLE) AS beta,
         bgnbd['log_likelihood'] AS log_likelihood, bgnbd['converged'] AS converged,
         bgnbd['iterations'] AS iterations, bgnbd['status'] AS status,
         bgnbd['at_bound'] AS at_bound, customers,
         bgnbd['se_r'] AS se_r, bgnbd['se_alpha'] AS se_alpha, bgnbd['se_a'] AS se_a,
         bgnbd['se_b'] AS se_b, CAST(NULL AS DOUBLE) AS se_s, CAST(NULL AS DOUBLE) AS se_beta,
         bgnbd['dropout'] AS dropout, bgnbd['se_dropout'] AS se_dropout
  FROM model_params WHERE bgnbd IS NOT NULL
  UNION ALL
  SELECT 'pareto_nbd',
         pareto_nbd['r'], pareto_nbd['alpha'], CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         pareto_nbd['s'], pareto_nbd['beta'],
         pareto_nbd['log_likelihood'], pareto_nbd['converged'],
         pareto_nbd['iterations'], pareto_nbd['status'], pareto_nbd['at_bound'], customers,
         pareto_nbd['se_r'], pareto_nbd['se_alpha'], CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         pareto_nbd['se_s'], pareto_nbd['se_beta'], CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
  FROM model_params WHERE pareto_nbd IS NOT NULL
  UNION ALL
  SELECT 'mbgnbd',
         mbgnbd['r'], mbgnbd['alpha'], mbgnbd['a'], mbgnbd['b'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         mbgnbd['log_likelihood'], mbgnbd['converged'],
         mbgnbd['iterations'], mbgnbd['status'], mbgnbd['at_bound'], customers,
         mbgnbd['se_r'], mbgnbd['se_alpha'], mbgnbd['se_a'], mbgnbd['se_b'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), mbgnbd['dropout'], CAST(NULL AS DOUBLE)
  FROM model_params WHERE mbgnbd IS NOT NULL
), counted AS (
  SELECT *,
         -- At a boundary the limiting model's free parameters: r and alpha
         -- (or one rate where they are NULL), plus the dropout side's: none
         -- without dropout (a = 0, s = 0), one for one dropout probability
         -- (a, b NULL beside dropout) or one dropout rate (s, beta NULL),
         -- s and beta for Pareto/NBD's one-rate limit.
         CASE WHEN status <> 'boundary' THEN 4
              ELSE (CASE WHEN r IS NOT NULL THEN 2 ELSE 1 END)
                 + (CASE WHEN model = 'pareto_nbd' THEN
                           (CASE WHEN s IS NULL THEN 1 WHEN s > 0 THEN 2 ELSE 0 END)
                         WHEN a IS NULL AND b IS NULL AND dropout IS NOT NULL THEN 1
                         ELSE 0 END)
         END AS k
  FROM purchase
)
SELECT
  f.model,
  f.r, f.alpha, f.a, f.b,
  CAST(NULL AS DOUBLE) AS p, CAST(NULL AS DOUBLE) AS q, CAST(NULL AS DOUBLE) AS v,
  CAST(NULL AS DOUBLE) AS v_over_q,
  f.se_r, f.se_alpha, f.se_a, f.se_b,
  CAST(NULL AS DOUBLE) AS se_p, CAST(NULL AS DOUBLE) AS se_q, CAST(NULL AS DOUBLE) AS se_v,
  CAST(NULL AS DOUBLE) AS se_v_over_q,
  f.log_likelihood,
  f.customers,
  f.converged,
  f.iterations,
  f.status,
  f.at_bound,
  CAST($penalizer AS DOUBLE) AS penalizer,
  CAST($time_unit AS VARCHAR) AS time_unit,
  CAST($holdout_days AS BIGINT) AS holdout_days,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.customers END AS holdout_customers,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.predicted END AS holdout_predicted,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.actual END AS holdout_actual,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.mae END AS holdout_mae,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.rank_correlation END AS holdout_rank_correlation,
  f.s,
  f.beta,
  f.se_s,
  f.se_beta,
  f.dropout,
  f.se_dropout,
  CAST(f.k AS BIGINT) AS free_parameters,
  2.0 * f.k - 2.0 * f.log_likelihood AS aic,
  f.k * ln(CAST(f.customers AS DOUBLE)) - 2.0 * f.log_likelihood AS bic,
  f.model = $model AS drives_scores
FROM counted f JOIN holdout ON holdout.model = f.model
UNION ALL
SELECT
  'gamma_gamma' AS model,
  CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
  gamma_gamma['p'], gamma_gamma['q'], gamma_gamma['v'], gamma_gamma['v_over_q'],
  CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
  gamma_gamma['se_p'], gamma_gamma['se_q'], gamma_gamma['se_v'], gamma_gamma['se_v_over_q'],
  gamma_gamma['log_likelihood'],
  gg_customers,
  gamma_gamma['converged'],
  gamma_gamma['iterations'],
  gamma_gamma['status'],
  gamma_gamma['at_bound'],
  CAST($penalizer AS DOUBLE),
  CAST($time_unit AS VARCHAR),
  CAST($holdout_days AS BIGINT),
  CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
  CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
  CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
  CAST(CASE WHEN gamma_gamma['status'] = 'boundary' THEN 2 ELSE 3 END AS BIGINT),
  2.0 * CASE WHEN gamma_gamma['status'] = 'boundary' THEN 2 ELSE 3 END
    - 2.0 * gamma_gamma['log_likelihood'],
  CASE WHEN gamma_gamma['status'] = 'boundary' THEN 2 ELSE 3 END
    * ln(CAST(gg_customers AS DOUBLE)) - 2.0 * gamma_gamma['log_likelihood'],
  CAST(NULL AS BOOLEAN)
FROM model_params
