-- Gate: every model fit must have converged to a verified optimum, unless the
-- job allows it. A NULL `converged` or a NULL parameter (no fit, or one that
-- ran off) fails like `false`; the message says why, from the fit's status.
-- A verified boundary optimum (status 'boundary', at_bound saying which
-- bound) is converged: its limiting model leaves BG/NBD's and MBG/NBD's b NULL
-- (a = 0), Pareto/NBD's beta (s = 0) or Gamma-Gamma's q and v (infinite,
-- v_over_q given), and nothing else. Every model fitted is checked, the ones
-- fitted for comparison (`models`) too.
-- Input: model_fit. Output: one row per model that did not converge.
-- Params: $allow_unconverged (BOOLEAN)
SELECT
  'model ' || model || ' ' || coalesce(status, 'was not fitted')
  || ' (set allow_unconverged = true to publish anyway)' AS message
FROM model_fit
WHERE NOT CAST($allow_unconverged AS BOOLEAN)
  AND (converged IS NOT TRUE
       OR log_likelihood IS NULL
       OR (status = 'boundary' AND at_bound IS NULL)
       OR (model IN ('bgnbd', 'mbgnbd') AND (r IS NULL OR alpha IS NULL OR a IS NULL
                                OR (b IS NULL AND NOT (status = 'boundary' AND a = 0))))
       OR (model = 'pareto_nbd' AND (r IS NULL OR alpha IS NULL OR s IS NULL
                                OR (beta IS NULL AND NOT (status = 'boundary' AND s = 0))))
       OR (model = 'gamma_gamma' AND (p IS NULL OR v_over_q IS NULL
                                      OR ((q IS NULL OR v IS NULL) AND status <> 'boundary'))))
