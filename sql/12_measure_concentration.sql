-- Step: Pareto concentration of the measured value and of CLV.
-- Input:  customer_scores
-- Output: concentration (measure, customers, total, top_20pct_share,
--         customers_for_80pct, gini, hhi)
-- Functions: top_share, share_for, gini, hhi (negative values count as 0)
-- Params: $value (the label of the measured value: revenue or margin)
SELECT
  CAST($value AS VARCHAR) AS measure,
  count(*) AS customers,
  sum(value_total) AS total,
  top_share(value_total, 0.2) AS top_20pct_share,
  CAST(ceil(share_for(value_total, 0.8) * count(*) - 1e-9) AS BIGINT) AS customers_for_80pct,
  gini(value_total) AS gini,
  hhi(value_total) AS hhi
FROM customer_scores
UNION ALL
SELECT
  'clv',
  count(clv),
  sum(clv),
  top_share(clv, 0.2),
  CAST(ceil(share_for(clv, 0.8) * count(clv) - 1e-9) AS BIGINT),
  gini(clv),
  hhi(clv)
FROM customer_scores
