-- Step: one row per fitted model, flat, for monitoring; with a holdout, the
-- calibration fit's prediction of the holdout beside what happened.
-- Inputs: model_params, customer_scores
-- Output: model_fit (model, r, alpha, a, b, p, q, v, v_over_q, se_r, se_alpha, se_a, se_b,
--         se_p, se_q, se_v, se_v_over_q (standard errors: inverse observed information,
--         delta method; NULL for a parameter at its bound, see at_bound), log_likelihood, customers,
--         converged, iterations, status ('converged', 'boundary', or why not), at_bound
--         (for a boundary optimum: which parameters are at which bound, the limiting
--         model used; NULL otherwise), penalizer, time_unit, holdout_days, holdout_customers,
--         holdout_predicted, holdout_actual (repeat purchase days in the holdout),
--         holdout_mae (per customer), holdout_rank_correlation (Spearman, ties averaged))
-- Params: $time_unit ('day' or 'week': the unit of alpha, recency and t), $holdout_days,
--         $penalizer
-- Average ranks from the distinct values: a value's rank is the count of
-- smaller values plus (its count + 1) / 2. Holdout purchases are a few small
-- integers shared by millions of customers; a RANGE frame over such ties
-- costs the tie group per row (19 s at 1.5M customers), a running sum over
-- the distinct values does not.
WITH h AS (
  SELECT holdout_predicted AS pred, CAST(holdout_purchases AS DOUBLE) AS actual
  FROM customer_scores
  WHERE holdout_predicted IS NOT NULL
), pred_ranks AS (
  SELECT pred,
         sum(count(*)) OVER (ORDER BY pred ROWS UNBOUNDED PRECEDING) - (count(*) - 1) * 0.5 AS pred_rank
  FROM h GROUP BY pred
), actual_ranks AS (
  SELECT actual,
         sum(count(*)) OVER (ORDER BY actual ROWS UNBOUNDED PRECEDING) - (count(*) - 1) * 0.5 AS actual_rank
  FROM h GROUP BY actual
), ranked AS (
  SELECT h.pred, h.actual, p.pred_rank, a.actual_rank
  FROM h
  JOIN pred_ranks p ON h.pred = p.pred
  JOIN actual_ranks a ON h.actual = a.actual
), holdout AS (
  SELECT
    count(*) AS customers,
    sum(pred) AS predicted,
    sum(actual) AS actual,
    avg(abs(pred - actual)) AS mae,
    corr(pred_rank, actual_rank) AS rank_correlation
  FROM ranked
)
SELECT
  'bgnbd' AS model,
  bgnbd['r'] AS r, bgnbd['alpha'] AS alpha, bgnbd['a'] AS a, bgnbd['b'] AS b,
  CAST(NULL AS DOUBLE) AS p, CAST(NULL AS DOUBLE) AS q, CAST(NULL AS DOUBLE) AS v,
  CAST(NULL AS DOUBLE) AS v_over_q,
  bgnbd['se_r'] AS se_r, bgnbd['se_alpha'] AS se_alpha, bgnbd['se_a'] AS se_a,
  bgnbd['se_b'] AS se_b,
  CAST(NULL AS DOUBLE) AS se_p, CAST(NULL AS DOUBLE) AS se_q, CAST(NULL AS DOUBLE) AS se_v,
  CAST(NULL AS DOUBLE) AS se_v_over_q,
  bgnbd['log_likelihood'] AS log_likelihood,
  model_params.customers,
  bgnbd['converged'] AS converged,
  bgnbd['iterations'] AS iterations,
  bgnbd['status'] AS status,
  bgnbd['at_bound'] AS at_bound,
  CAST($penalizer AS DOUBLE) AS penalizer,
  CAST($time_unit AS VARCHAR) AS time_unit,
  CAST($holdout_days AS BIGINT) AS holdout_days,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.customers END AS holdout_customers,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.predicted END AS holdout_predicted,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.actual END AS holdout_actual,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.mae END AS holdout_mae,
  CASE WHEN CAST($holdout_days AS BIGINT) > 0 THEN holdout.rank_correlation END AS holdout_rank_correlation
FROM model_params CROSS JOIN holdout
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
  CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
FROM model_params
