-- Step: observed and projected survival per cohort, $horizon_periods beyond
-- the last observed period.
-- Inputs: subscription_fit, subscription_survivors
-- Output: subscription_survival (cohort, period, observed_survivors (NULL in the
--         future), projected_survivors = cohort_size * S(period), projected_survival
--         S(period), projected_retention r(period) (NULL for period 0), alpha, beta,
--         converged)
-- Functions: sbg_survival, sbg_retention
-- Params: $horizon_periods
WITH grid AS (
  SELECT cohort, cohort_size, periods_observed, params,
         unnest(range(0, periods_observed + CAST($horizon_periods AS BIGINT) + 1)) AS period
  FROM subscription_fit
)
SELECT
  g.cohort,
  g.period,
  s.survivors AS observed_survivors,
  g.cohort_size * sbg_survival(g.params, g.period) AS projected_survivors,
  sbg_survival(g.params, g.period) AS projected_survival,
  CASE WHEN g.period >= 1 THEN sbg_retention(g.params, g.period) END AS projected_retention,
  g.params['alpha'] AS alpha,
  g.params['beta'] AS beta,
  g.params['converged'] AS converged
FROM grid g
LEFT JOIN subscription_survivors s ON s.cohort = g.cohort AND s.period = g.period
