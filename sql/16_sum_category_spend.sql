-- Step: each customer's spend by category.
-- Input:  transactions_clean
-- Output: category_spend (customer_id, category ('(none)' when missing), spend,
--         spend_12m (the 12 calendar months ending at the as-of date, as
--         customer_tiers.spend_12m))
-- Params: $as_of (DATE). Units: the measured value ($value).
SELECT
  customer_id,
  coalesce(category, '(none)') AS category,
  sum(value) AS spend,
  coalesce(sum(value) FILTER (WHERE order_ts > CAST($as_of AS DATE) - INTERVAL '12 months'), 0.0) AS spend_12m
FROM transactions_clean
GROUP BY 1, 2
