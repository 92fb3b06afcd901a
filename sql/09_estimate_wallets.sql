-- Step: each customer's wallet: from the optional `wallets` input, else estimated
-- as a high quantile of the last 12 months' spend among the customer's peers
-- (Perlich, Rosset et al., "High-quantile modeling for customer wallet
-- estimation", KDD 2007): what the best peers spend is what the customer could.
-- Inputs: transactions_clean, wallets (customer_id, wallet; may be empty)
-- Output: wallet_estimates (customer_id, spend_12m, wallet, wallet_source)
-- Params: $as_of (DATE), $wallet_quantile (e.g. 0.9). Units: the measured value.
WITH recent AS (
  SELECT
    customer_id,
    max(peer_group) AS peer_group,
    -- The 12 calendar months ending at $as_of: after as_of - 12 months
    -- (2023-07-01..2024-06-30 for 2024-06-30), leap days included.
    coalesce(sum(value) FILTER (WHERE order_ts > CAST($as_of AS DATE) - INTERVAL '12 months'), 0.0) AS spend_12m
  FROM transactions_clean
  GROUP BY customer_id
), peers AS (
  SELECT
    coalesce(peer_group, '') AS peer_group,
    percentile_cont(CAST($wallet_quantile AS DOUBLE)) WITHIN GROUP (ORDER BY greatest(spend_12m, 0.0)) AS wallet_estimate
  FROM recent
  GROUP BY coalesce(peer_group, '')
)
SELECT
  r.customer_id,
  r.spend_12m,
  coalesce(w.wallet, p.wallet_estimate) AS wallet,
  CASE WHEN w.wallet IS NOT NULL THEN 'input' ELSE 'estimated' END AS wallet_source
FROM recent r
LEFT JOIN peers p ON coalesce(r.peer_group, '') = p.peer_group
LEFT JOIN wallets w ON CAST(w.customer_id AS VARCHAR) = CAST(r.customer_id AS VARCHAR)
