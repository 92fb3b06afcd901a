-- Step: the RFM summary of Fader, Hardie & Lee (2005) / lifetimes, in model units.
-- Input:  customer_summary
-- Output: rfm, one row per customer with at least one purchase day:
--   first_day, last_day (INT days since 1970-01-01), first_purchase, last_purchase
--   (DATE), orders, revenue, margin, value_total, frequency (purchase days - 1),
--   recency and t (in $time_unit_days-day units), monetary_value (mean value of the
--   repeat purchase days, 0 when frequency = 0)
--   With a holdout ($holdout_days > 0) also the calibration summary at
--   $calibration_end_day: cal_frequency (-1 when the first purchase is later),
--   cal_recency, cal_t, and holdout_purchases (purchase days after it).
-- Params: $as_of_day, $calibration_end_day (BIGINT days since 1970-01-01),
--         $time_unit_days (1 or 7)
-- A customer whose days all net below zero (only returns) has no purchase day
-- and is left out; zero-amount days are purchases (CDNOW has such first orders).
SELECT
  customer_id,
  CAST(first_purchase AS INT) AS first_day,
  CAST(last_purchase AS INT) AS last_day,
  first_purchase,
  last_purchase,
  orders,
  revenue,
  margin,
  value_total,
  CAST(purchase_days - 1 AS DOUBLE) AS frequency,
  CAST(CAST(last_purchase AS INT) - CAST(first_purchase AS INT) AS DOUBLE)
    / CAST($time_unit_days AS DOUBLE) AS recency,
  CAST(CAST($as_of_day AS BIGINT) - CAST(first_purchase AS INT) AS DOUBLE)
    / CAST($time_unit_days AS DOUBLE) AS t,
  CAST(cal_purchase_days - 1 AS DOUBLE) AS cal_frequency,
  coalesce(CAST(CAST(cal_last_purchase AS INT) - CAST(first_purchase AS INT) AS DOUBLE), 0.0)
    / CAST($time_unit_days AS DOUBLE) AS cal_recency,
  greatest(CAST(CAST($calibration_end_day AS BIGINT) - CAST(first_purchase AS INT) AS DOUBLE), 0.0)
    / CAST($time_unit_days AS DOUBLE) AS cal_t,
  holdout_purchases,
  CASE
    WHEN purchase_days <= 1 THEN 0.0
    ELSE repeat_value / CAST(purchase_days - 1 AS DOUBLE)
  END AS monetary_value
FROM customer_summary
WHERE purchase_days > 0
