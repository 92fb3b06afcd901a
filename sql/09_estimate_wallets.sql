-- Step: each customer's wallet (the customer's total spend in the category,
-- with us and elsewhere): from the optional `wallets` input, else estimated
-- as the $wallet_quantile conditional quantile of the last 12 months' spend
-- given the customer's features (Perlich, Rosset et al., "High-quantile
-- modeling for customer wallet estimation", KDD 2007): what the best
-- customers like this one spend is what this one could.
-- Inputs: transactions_clean, customer_scores, wallets (customer_id, wallet; may be empty)
-- Output: wallet_estimates (customer_id, spend_12m, wallet, wallet_source:
--         'input', 'model' or 'peer_group')
-- Params: $as_of (DATE), $wallet_quantile (e.g. 0.9),
--         $wallet_method ('model' or 'peer_group'). Units: the measured value.
-- Functions: wallet_fit (quantile regression of ln(1 + spend_12m) over a
-- fixed-hash sample of at most 20,000 customers).
-- 'model': the regression on ln(1 + frequency), ln(1 + t), ln(1 + categories
-- bought) and ln(1 + the peer group's quantile), clamped to at least spend_12m.
-- Recency and mean order value are left out on purpose: recency says whether
-- the customer still buys from us (the share, not the wallet), and frequency
-- times mean order value is the customer's own spend, so with both the
-- quantile follows each customer's spend and every share comes out alike
-- (README, "Share of wallet", has the validation). Too few customers to fit
-- (30 per coefficient) or a customer without scores: the peer-group quantile.
-- 'peer_group': the $wallet_quantile of spend_12m among the customer's peer
-- group (everyone, without a peer_group column).
WITH recent AS (
  SELECT
    customer_id,
    max(peer_group) AS peer_group,
    -- The 12 calendar months ending at $as_of: after as_of - 12 months
    -- (2023-07-01..2024-06-30 for 2024-06-30), leap days included.
    coalesce(sum(value) FILTER (WHERE order_ts > CAST($as_of AS DATE) - INTERVAL '12 months'), 0.0) AS spend_12m,
    count(DISTINCT category) AS categories
  FROM transactions_clean
  GROUP BY customer_id
), peers AS (
  SELECT
    coalesce(peer_group, '') AS peer_group,
    percentile_cont(CAST($wallet_quantile AS DOUBLE)) WITHIN GROUP (ORDER BY greatest(spend_12m, 0.0)) AS peer_wallet
  FROM recent
  GROUP BY coalesce(peer_group, '')
), features AS (
  SELECT
    r.customer_id,
    r.spend_12m,
    p.peer_wallet,
    ln(1.0 + s.frequency) AS x_frequency,
    ln(1.0 + s.t) AS x_t,
    ln(1.0 + r.categories) AS x_categories,
    ln(1.0 + greatest(p.peer_wallet, 0.0)) AS x_peer
  FROM recent r
  LEFT JOIN peers p ON coalesce(r.peer_group, '') = p.peer_group
  LEFT JOIN customer_scores s ON s.customer_id = r.customer_id
), fit AS (
  SELECT
    wallet_fit(CAST(customer_id AS VARCHAR), spend_12m, CAST($wallet_quantile AS DOUBLE),
               x_frequency, x_t, x_categories, x_peer)['coefficients'] AS b
  FROM features
  WHERE CAST($wallet_method AS VARCHAR) = 'model'
), predicted AS (
  SELECT
    f.*,
    -- The fitted quantile of ln(1 + spend); NULL without a fit or features.
    m.b[1] + m.b[2] * f.x_frequency + m.b[3] * f.x_t + m.b[4] * f.x_categories
      + m.b[5] * f.x_peer AS log_wallet
  FROM features f
  -- An aggregate without GROUP BY: always one row (NULL b without a fit).
  CROSS JOIN fit m
)
SELECT
  r.customer_id,
  r.spend_12m,
  coalesce(
    w.wallet,
    -- A quantile of spend is never below 0: ln(1 + spend) >= 0. The fitted
    -- line passes through a few customers' own points (the optimum's rows):
    -- within a billionth of the spend it is the spend, not rounding noise.
    CASE WHEN r.log_wallet IS NULL THEN NULL
         WHEN exp(greatest(r.log_wallet, 0.0)) - 1.0 <= r.spend_12m * (1.0 + 1e-9) THEN r.spend_12m
         ELSE exp(greatest(r.log_wallet, 0.0)) - 1.0 END,
    r.peer_wallet
  ) AS wallet,
  CASE
    WHEN w.wallet IS NOT NULL THEN 'input'
    WHEN r.log_wallet IS NOT NULL THEN 'model'
    ELSE 'peer_group'
  END AS wallet_source
FROM predicted r
LEFT JOIN wallets w ON CAST(w.customer_id AS VARCHAR) = CAST(r.customer_id AS VARCHAR)
