-- Gate: every model fit must have converged to a verified optimum, unless the
-- job allows it. A NULL `converged` or a NULL parameter (no fit, or one that
-- ran off) fails like `false`; the message says why, from the fit's status.
-- A verified boundary optimum (status 'boundary', at_bound saying which
-- bound) is converged: its limiting model leaves BG/NBD's and MBG/NBD's b NULL
-- (a = 0), their a and b (infinite, dropout given), Pareto/NBD's beta
-- (s = 0) or Gamma-Gamma's q and v (infinite, v_over_q given), BG/NBD's r,
-- alpha and b in its Poisson limit (a = 0, r and alpha infinite, rate given),
-- and nothing else. Every purchase model fitted ($models) is
-- checked, the ones fitted for comparison too.
-- It reads the fits themselves (model_params), so that it runs right after
-- the fit, before any step scores customers with the parameters: an
-- unconverged fit stops the run here (exit 3, the reason), not in the
-- scoring (exit 1).
-- Input: model_params. Output: one row per model that did not converge.
-- Params: $allow_unconverged (BOOLEAN), $models (comma-separated purchase models)
WITH fits AS (
  SELECT 'bgnbd' AS model, bgnbd['converged'] AS converged, bgnbd['status'] AS status,
         bgnbd['at_bound'] AS at_bound, bgnbd['log_likelihood'] AS log_likelihood,
         bgnbd['r'] AS r, bgnbd['alpha'] AS alpha, bgnbd['a'] AS a, bgnbd['b'] AS b,
         CAST(NULL AS DOUBLE) AS s, CAST(NULL AS DOUBLE) AS beta,
         CAST(NULL AS DOUBLE) AS p, CAST(NULL AS DOUBLE) AS q, CAST(NULL AS DOUBLE) AS v,
         CAST(NULL AS DOUBLE) AS v_over_q, bgnbd['dropout'] AS dropout,
         bgnbd['rate'] AS rate
  FROM model_params WHERE strpos(',' || $models || ',', ',bgnbd,') > 0
  UNION ALL
  SELECT 'mbgnbd', mbgnbd['converged'], mbgnbd['status'], mbgnbd['at_bound'],
         mbgnbd['log_likelihood'], mbgnbd['r'], mbgnbd['alpha'], mbgnbd['a'], mbgnbd['b'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         mbgnbd['dropout'], CAST(NULL AS DOUBLE)
  FROM model_params WHERE strpos(',' || $models || ',', ',mbgnbd,') > 0
  UNION ALL
  SELECT 'pareto_nbd', pareto_nbd['converged'], pareto_nbd['status'], pareto_nbd['at_bound'],
         pareto_nbd['log_likelihood'], pareto_nbd['r'], pareto_nbd['alpha'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), pareto_nbd['s'], pareto_nbd['beta'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
  FROM model_params WHERE strpos(',' || $models || ',', ',pareto_nbd,') > 0
  UNION ALL
  SELECT 'gamma_gamma', gamma_gamma['converged'], gamma_gamma['status'],
         gamma_gamma['at_bound'], gamma_gamma['log_likelihood'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE),
         gamma_gamma['p'], gamma_gamma['q'], gamma_gamma['v'], gamma_gamma['v_over_q'],
         CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE)
  FROM model_params
)
SELECT
  'model ' || model || ' ' || coalesce(status, 'was not fitted')
  || ' (set allow_unconverged = true to publish anyway)' AS message
FROM fits
WHERE NOT CAST($allow_unconverged AS BOOLEAN)
  AND (converged IS NOT TRUE
       OR log_likelihood IS NULL
       OR (status = 'boundary' AND at_bound IS NULL)
       OR (model IN ('bgnbd', 'mbgnbd')
           AND NOT (status = 'boundary' AND coalesce(a = 0, false) AND r IS NULL
                    AND alpha IS NULL AND coalesce(rate > 0, false))
           AND (r IS NULL OR alpha IS NULL
            OR NOT ((a IS NOT NULL AND b IS NOT NULL)
                    OR (status = 'boundary' AND coalesce(a = 0, false))
                    OR (status = 'boundary' AND a IS NULL AND b IS NULL
                        AND dropout IS NOT NULL))))
       OR (model = 'pareto_nbd' AND (r IS NULL OR alpha IS NULL OR s IS NULL
                                OR (beta IS NULL AND NOT (status = 'boundary' AND s = 0))))
       OR (model = 'gamma_gamma' AND (p IS NULL OR v_over_q IS NULL
                                      OR ((q IS NULL OR v IS NULL) AND status <> 'boundary'))))
ORDER BY model
