-- Step: the shifted-beta-geometric model (Fader & Hardie 2007) per start cohort.
-- Input:  subscription_survivors
-- Output: subscription_fit (cohort, cohort_size, periods_observed, alpha, beta,
--         log_likelihood, converged, iterations)
-- Functions: sbg_fit
SELECT
  cohort,
  max(survivors) AS cohort_size,
  max(period) AS periods_observed,
  sbg_fit(period, survivors) AS params
FROM subscription_survivors
GROUP BY cohort
