-- Step: each customer's wallet (the customer's total spend in the category,
-- with us and elsewhere): from the optional `wallets` input, else estimated
-- as the $wallet_quantile conditional quantile of the last 12 months' spend
-- given the customer's features (Perlich, Rosset et al., "High-quantile
-- modeling for customer wallet estimation", KDD 2007): what the best
-- customers like this one spend is what this one could.
-- Inputs: wallet_features (each customer's spend_12m, peer_wallet and the
--         features: sql/32_gather_wallet_features.sql), wallets (customer_id,
--         wallet; may be empty)
-- Output: wallet_estimates (customer_id, spend_12m, wallet, wallet_source:
--         'input', 'model' or 'peer_group', wallet_calibration)
-- Params: $wallet_quantile (e.g. 0.9),
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
-- Bounded: at most the most any customer at most as frequent spent in the 12
-- months (on CDNOW the unbounded line gave the 115 most frequent buyers
-- 100,000 each against 400 of spend). Calibrated: when the wallets input
-- covers a sample of customers (a survey), the estimate is shifted on the log
-- scale so that the wallet_quantile of the sample's true wallets is below it,
-- per stratum (bought in the 12 months or not); the sampled customers keep
-- their input wallet. Uncalibrated, the estimate assumes the top
-- 1 - wallet_quantile of comparable customers give us all of their wallet.
-- 'peer_group': the $wallet_quantile of spend_12m among the customer's peer
-- group (everyone, without a peer_group column).
WITH features AS (
  -- One row per customer (sql/32_gather_wallet_features.sql).
  SELECT * FROM wallet_features
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
      + m.b[5] * f.x_peer AS log_fitted
  FROM features f
  -- An aggregate without GROUP BY: always one row (NULL b without a fit).
  CROSS JOIN fit m
), bands AS (
  -- The most any customer spent in 12 months among those at most as
  -- frequent (frequency bands of width 0.5 in ln(1 + frequency)): a
  -- quantile of spend given the features cannot exceed it, so it bounds the
  -- log-linear line where it extrapolates to the most frequent buyers.
  SELECT band,
         max(max(spend_12m)) OVER (ORDER BY band ROWS UNBOUNDED PRECEDING) AS band_max
  FROM (SELECT round(2.0 * x_frequency) AS band, greatest(spend_12m, 0.0) AS spend_12m
        FROM features WHERE x_frequency IS NOT NULL)
  GROUP BY band
), bounded AS (
  SELECT p.*,
         -- greatest and least skip a NULL argument: without a fit the
         -- estimate stays NULL (the peer-group fallback), without a band
         -- it is unbounded.
         CASE WHEN p.log_fitted IS NOT NULL
              THEN least(greatest(p.log_fitted, 0.0), ln(1.0 + b.band_max)) END AS log_wallet
  FROM predicted p
  LEFT JOIN bands b ON b.band = round(2.0 * p.x_frequency)
), surveyed AS (
  -- Calibration against the customers the wallets input covers (a survey
  -- sample): per stratum (bought in the 12 months or not: for those who did
  -- not, a quantile of spend with us says least about the wallet, so they
  -- need the larger correction), the shift of ln(1 + wallet) that puts the
  -- wallet_quantile of the stratum's surveyed wallets below the estimate.
  SELECT
    b.spend_12m > 0.0 AS active,
    count(*) AS surveyed,
    percentile_cont(CAST($wallet_quantile AS DOUBLE))
      WITHIN GROUP (ORDER BY ln(1.0 + w.wallet) - b.log_wallet) AS shift
  FROM bounded b
  JOIN wallets w ON CAST(w.customer_id AS VARCHAR) = CAST(b.customer_id AS VARCHAR)
  WHERE b.log_wallet IS NOT NULL AND w.wallet >= 0.0
  GROUP BY b.spend_12m > 0.0
), estimated AS (
  -- A stratum's shift is used with at least 100 of its customers surveyed
  -- (the coverage's sampling error then at most 0.03 at 0.9); else its
  -- estimates stay uncalibrated.
  SELECT b.*,
         CASE WHEN s.surveyed >= 100 THEN s.shift END AS calibration_shift
  FROM bounded b
  LEFT JOIN surveyed s ON s.active = (b.spend_12m > 0.0)
), modelled AS (
  SELECT e.*,
         exp(greatest(e.log_wallet + coalesce(e.calibration_shift, 0.0), 0.0)) - 1.0 AS model_wallet
  FROM estimated e
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
         WHEN r.model_wallet <= r.spend_12m * (1.0 + 1e-9) THEN r.spend_12m
         ELSE r.model_wallet END,
    r.peer_wallet
  ) AS wallet,
  CASE
    WHEN w.wallet IS NOT NULL THEN 'input'
    WHEN r.log_wallet IS NOT NULL THEN 'model'
    ELSE 'peer_group'
  END AS wallet_source,
  -- The calibration's multiplier on 1 + the model's estimate (NULL where
  -- the wallet is not the model's or no survey calibrated it).
  CASE WHEN w.wallet IS NULL AND r.log_wallet IS NOT NULL THEN exp(r.calibration_shift) END
    AS wallet_calibration
FROM modelled r
LEFT JOIN wallets w ON CAST(w.customer_id AS VARCHAR) = CAST(r.customer_id AS VARCHAR)
