-- Gate: every model fit must have converged, unless the job allows it.
-- Input: model_fit. Output: one row per model that did not converge.
-- Params: $allow_unconverged (BOOLEAN)
SELECT
  'model ' || model || ' did not converge after ' || CAST(iterations AS VARCHAR)
  || ' iterations (set allow_unconverged = true to publish anyway)' AS message
FROM model_fit
WHERE converged = false AND NOT CAST($allow_unconverged AS BOOLEAN)
