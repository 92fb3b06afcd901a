-- Step: per-customer facts from the usable transactions, in one pass.
-- Input:  transactions_validated
-- Output: customer_summary, one row per customer_id value of the input (NULL
--   included): rows_read (rows the input's `where` keeps), rows_filtered (rows
--   it leaves out), rows_rejected, rows_after_as_of (the quality counts, from
--   the same scan), newest_order_ts (DATE: the newest usable row's day,
--   returns included; NULL without any), then over its usable rows (valid, on or before
--   $as_of; 0 or NULL without any): lines (rows used), duplicate_lines (exact repeats of a row of
--   the same order_id, counted once, as in transactions_clean), orders (distinct
--   order_ids with a purchase line, amount >= 0, plus purchase lines without an
--   order_id: a refund is no order), revenue (sum of amount), margin,
--   value_total (sum of the measured value), purchase_days (days whose net amount
--   is >= 0), first_purchase, last_purchase (DATE, purchase days), repeat_value
--   (value of the purchase days after the first), cal_purchase_days and
--   cal_last_purchase (purchase days up to $calibration_end), holdout_purchases
--   (purchase days after it)
-- Params: $as_of, $calibration_end (DATE), $value ('revenue' or 'margin')
-- Functions: customer_summary (merges a day's lines and nets its returns).
WITH summaries AS (
  SELECT
    customer_id,
    count(*) FILTER (WHERE NOT filtered) AS rows_read,
    count(*) FILTER (WHERE filtered) AS rows_filtered,
    count(*) FILTER (WHERE reject_reason IS NOT NULL) AS rows_rejected,
    count(*) FILTER (WHERE reject_reason IS NULL AND NOT filtered AND order_ts > $as_of) AS rows_after_as_of,
    max(order_ts) FILTER (WHERE reject_reason IS NULL AND NOT filtered AND order_ts <= $as_of) AS newest_order_ts,
    customer_summary(
      order_ts, order_id, amount, margin,
      CASE WHEN CAST($value AS VARCHAR) = 'margin' THEN margin ELSE amount END,
      named_struct('category', category, 'peer_group', peer_group, 'line', line_key),
      CAST($calibration_end AS DATE)
    ) FILTER (WHERE reject_reason IS NULL AND NOT filtered AND order_ts <= $as_of) AS x
  FROM transactions_validated
  GROUP BY customer_id
)
SELECT
  customer_id,
  rows_read,
  rows_filtered,
  rows_rejected,
  rows_after_as_of,
  newest_order_ts,
  coalesce(x['lines'], 0) AS lines,
  coalesce(x['duplicate_lines'], 0) AS duplicate_lines,
  x['orders'] AS orders,
  x['revenue'] AS revenue,
  x['margin'] AS margin,
  x['value_total'] AS value_total,
  x['purchase_days'] AS purchase_days,
  x['first_day'] AS first_purchase,
  x['last_day'] AS last_purchase,
  x['repeat_value'] AS repeat_value,
  x['cal_purchase_days'] AS cal_purchase_days,
  x['cal_last_day'] AS cal_last_purchase,
  x['holdout_purchases'] AS holdout_purchases
FROM summaries
