-- Step: each customer's spend by category.
-- Input:  transactions_clean
-- Output: category_spend (customer_id, category ('(none)' when missing), spend,
--         spend_12m (the 365 days to the as-of date))
-- Params: $as_of_day (BIGINT). Units: the measured value ($value).
SELECT
  customer_id,
  coalesce(category, '(none)') AS category,
  sum(value) AS spend,
  coalesce(sum(value) FILTER (WHERE day > CAST($as_of_day AS BIGINT) - 365), 0.0) AS spend_12m
FROM transactions_clean
GROUP BY 1, 2
