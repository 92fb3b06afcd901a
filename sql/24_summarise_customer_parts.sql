-- Step (incremental nights, `custval run --incremental`): the per-customer
-- facts of 05_summarise_customers.sql over the rows an incremental night
-- reads, split at the state's new cutoff.
-- Input:  transactions_validated, only the rows whose day is on or after
--         $previous_cutoff (the cutoff of the previous night's customer_state;
--         0001-01-01 on a full night) and the rows without a day
-- Output: customer_parts, one row per (customer_id, in_state): in_state = the
--         rows' day is before $state_cutoff (they go into tonight's
--         customer_state); otherwise the rows on or after it, the rows after
--         $as_of and those without a day, which only tonight's tables count.
--         Columns as customer_summary (05), plus first_value (value of the
--         first purchase day) and purchase_value (value of all purchase days),
--         what folding two summaries of disjoint day ranges needs.
-- Params: $as_of, $calibration_end (DATE, on or after $state_cutoff - 1: the
--         job's holdout_days is at most lookback_days), $value, $state_cutoff,
--         $previous_cutoff (DATE)
-- Functions: customer_summary.
-- A day never straddles the cutoff (the day is the calendar day in the job's
-- timezone, the cutoff a day of the same calendar), so a day's returns are
-- netted and its exact repeats dropped on one side only.
WITH summaries AS (
  SELECT
    customer_id,
    coalesce(order_ts < CAST($state_cutoff AS DATE), false) AS in_state,
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
  WHERE order_ts IS NULL OR order_ts >= CAST($previous_cutoff AS DATE)
  GROUP BY 1, 2
)
SELECT
  customer_id,
  in_state,
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
  x['first_value'] AS first_value,
  x['purchase_value'] AS purchase_value,
  x['cal_purchase_days'] AS cal_purchase_days,
  x['cal_last_day'] AS cal_last_purchase,
  x['holdout_purchases'] AS holdout_purchases
FROM summaries
