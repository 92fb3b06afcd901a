-- Step: one flat row per cohort fit, for monitoring.
-- Input:  subscription_fit
-- Output: subscription_model_fit (cohort, cohort_size, periods_observed, alpha,
--         beta, log_likelihood, converged, iterations)
SELECT
  cohort, cohort_size, periods_observed,
  params['alpha'] AS alpha, params['beta'] AS beta,
  params['log_likelihood'] AS log_likelihood,
  params['converged'] AS converged, params['iterations'] AS iterations
FROM subscription_fit
