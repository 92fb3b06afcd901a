-- Step: the per-customer RFM summary of Fader, Hardie & Lee (2005) / lifetimes.
-- Input:  transactions_clean
-- Output: rfm, one row per customer with at least one purchase day:
--   first_purchase, last_purchase (DATE), orders, revenue (sum of amount), margin,
--   value_total (sum of the measured value), frequency (purchase days - 1),
--   recency and t (in $time_unit_days-day units), monetary_value (mean value of the
--   repeat purchase days, 0 when frequency = 0)
--   With a holdout ($holdout_days > 0) also the calibration summary at
--   $calibration_end_day: cal_frequency (-1 when the first purchase is later),
--   cal_recency, cal_t, and holdout_purchases (purchase days after it).
-- Params: $as_of_day, $calibration_end_day (BIGINT days since 1970-01-01),
--         $time_unit_days (1 or 7)
-- Purchases of one day are merged and returns netted within the day; a day whose
-- net amount is below zero is a return, not a purchase day. Zero-amount days are
-- purchases (CDNOW has such first orders).
WITH orders AS (
  -- One row per order (or per row, when there is no order_id): no per-group
  -- DISTINCT sets, so memory stays with the engine's pool.
  SELECT customer_id, day, order_id, sum(amount) AS amount, sum(margin) AS margin,
         sum(value) AS value, count(*) AS lines
  FROM transactions_clean
  GROUP BY customer_id, day, order_id
), days AS (
  SELECT
    customer_id,
    day,
    sum(amount) AS amount,
    sum(margin) AS margin,
    sum(value) AS value,
    sum(CASE WHEN order_id IS NULL THEN lines ELSE 1 END) AS orders
  FROM orders
  GROUP BY customer_id, day
)
SELECT
  customer_id,
  CAST(min(day) FILTER (WHERE amount >= 0) AS INT) AS first_day,
  CAST(max(day) FILTER (WHERE amount >= 0) AS INT) AS last_day,
  CAST(CAST(min(day) FILTER (WHERE amount >= 0) AS INT) AS DATE) AS first_purchase,
  CAST(CAST(max(day) FILTER (WHERE amount >= 0) AS INT) AS DATE) AS last_purchase,
  sum(orders) AS orders,
  sum(amount) AS revenue,
  sum(margin) AS margin,
  sum(value) AS value_total,
  CAST(count(*) FILTER (WHERE amount >= 0) - 1 AS DOUBLE) AS frequency,
  CAST(max(day) FILTER (WHERE amount >= 0) - min(day) FILTER (WHERE amount >= 0) AS DOUBLE)
    / CAST($time_unit_days AS DOUBLE) AS recency,
  CAST(CAST($as_of_day AS BIGINT) - min(day) FILTER (WHERE amount >= 0) AS DOUBLE)
    / CAST($time_unit_days AS DOUBLE) AS t,
  CAST(count(*) FILTER (WHERE amount >= 0 AND day <= CAST($calibration_end_day AS BIGINT)) - 1 AS DOUBLE) AS cal_frequency,
  coalesce(CAST(max(day) FILTER (WHERE amount >= 0 AND day <= CAST($calibration_end_day AS BIGINT))
              - min(day) FILTER (WHERE amount >= 0) AS DOUBLE), 0.0)
    / CAST($time_unit_days AS DOUBLE) AS cal_recency,
  greatest(CAST(CAST($calibration_end_day AS BIGINT) - min(day) FILTER (WHERE amount >= 0) AS DOUBLE), 0.0)
    / CAST($time_unit_days AS DOUBLE) AS cal_t,
  count(*) FILTER (WHERE amount >= 0 AND day > CAST($calibration_end_day AS BIGINT)) AS holdout_purchases,
  CASE
    WHEN count(*) FILTER (WHERE amount >= 0) <= 1 THEN 0.0
    ELSE (sum(value) FILTER (WHERE amount >= 0)
          - first_value(value ORDER BY day) FILTER (WHERE amount >= 0))
         / CAST(count(*) FILTER (WHERE amount >= 0) - 1 AS DOUBLE)
  END AS monetary_value
FROM days
GROUP BY customer_id
HAVING count(*) FILTER (WHERE amount >= 0) > 0
