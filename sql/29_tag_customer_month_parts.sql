-- Step (incremental nights, `custval run --incremental`, jobs with a
-- customer_months step): the customer-month facts of
-- 13_tag_customer_months.sql over the rows an incremental night reads, split
-- at the state's new cutoff.
-- Input:  transactions_validated, only the usable rows (valid, kept by the
--         input's `where`, on or before $as_of) whose day is on or after
--         $previous_cutoff
-- Output: month_parts, one row per (customer_id, m, in_state): m = months
--         since year 0 (year * 12 + month - 1), in_state = the days are
--         before $state_cutoff (they go into tonight's customer_month_state),
--         revenue = sum of the measured value (returns included), active = at
--         least one purchase day (a day whose lines net to 0 or more)
-- Params: $as_of, $state_cutoff, $previous_cutoff (DATE), $value ('revenue' or
--         'margin')
-- Functions: day_net_amount.
-- The rows are 02_clean_transactions.sql's (an exact repeat of a row of the
-- same order_id counted once), the days and months 13's. A day never
-- straddles the cutoff, so a day's netting and its repeats are on one side;
-- a month can, and is folded (revenue adds, active is either side's).
WITH valid AS (
  SELECT customer_id, order_ts, amount, margin, order_id, category, peer_group, line_key
  FROM transactions_validated
  WHERE reject_reason IS NULL AND NOT filtered AND order_ts <= $as_of
    AND order_ts >= CAST($previous_cutoff AS DATE)
), deduplicated AS (
  SELECT * FROM valid WHERE order_id IS NULL
  UNION ALL
  SELECT DISTINCT * FROM valid WHERE order_id IS NOT NULL
), days AS (
  SELECT
    customer_id,
    order_ts,
    sum(CASE WHEN CAST($value AS VARCHAR) = 'margin' THEN margin ELSE amount END) AS revenue,
    day_net_amount(sum(amount), sum(abs(amount))) >= 0 AS purchase_day
  FROM deduplicated
  GROUP BY 1, 2
)
SELECT
  customer_id,
  CAST(date_part('year', order_ts) * 12 + date_part('month', order_ts) - 1 AS BIGINT) AS m,
  order_ts < CAST($state_cutoff AS DATE) AS in_state,
  sum(revenue) AS revenue,
  bool_or(purchase_day) AS active
FROM days
GROUP BY 1, 2, 3
