-- Step (incremental nights): customer_summary (05_summarise_customers.sql's
-- table, the same columns and values up to floating-point summation order)
-- from tonight's customer_state and the rows on or after its cutoff.
-- Input:  customer_state, customer_parts (rows not in_state), order_parts
--         (the order ids read tonight with purchase lines on both sides)
-- Output: customer_summary, as 05_summarise_customers.sql, plus first_value
--         and purchase_value
-- Params: none.
-- Folding a summary `a` of earlier days with a summary `b` of later days
-- (disjoint: a day is on one side of a cutoff): counts and sums add, first
-- days come from `a`, last ones from `b`; the repeat value is `a`'s plus
-- every purchase day of `b` (all after `a`'s first), or `b`'s own when `a`
-- has no purchase day; orders add less the order ids both sides have
-- (order_parts: counted once, as a full run counts an order id whatever days
-- its purchase lines fall on). Exact but for the order floating-point sums
-- are added in. The same fold is in 25_fold_customer_state.sql and
-- 26_merge_customer_summary.sql.
WITH b AS (SELECT * FROM customer_parts WHERE NOT in_state),
r AS (
  SELECT customer_id, count(*) AS repeats
  FROM order_parts
  WHERE after_state AND (known OR in_state)
  GROUP BY customer_id
)
SELECT
  coalesce(a.customer_id, b.customer_id) AS customer_id,
  coalesce(a.rows_read, 0) + coalesce(b.rows_read, 0) AS rows_read,
  coalesce(a.rows_filtered, 0) + coalesce(b.rows_filtered, 0) AS rows_filtered,
  coalesce(a.rows_rejected, 0) + coalesce(b.rows_rejected, 0) AS rows_rejected,
  coalesce(a.rows_after_as_of, 0) + coalesce(b.rows_after_as_of, 0) AS rows_after_as_of,
  coalesce(b.newest_order_ts, a.newest_order_ts) AS newest_order_ts,
  coalesce(a.lines, 0) + coalesce(b.lines, 0) AS lines,
  coalesce(a.duplicate_lines, 0) + coalesce(b.duplicate_lines, 0) AS duplicate_lines,
  CASE WHEN a.orders IS NULL THEN b.orders WHEN b.orders IS NULL THEN a.orders ELSE a.orders + b.orders - coalesce(r.repeats, 0) END AS orders,
  CASE WHEN a.revenue IS NULL THEN b.revenue WHEN b.revenue IS NULL THEN a.revenue ELSE a.revenue + b.revenue END AS revenue,
  CASE WHEN a.margin IS NULL THEN b.margin WHEN b.margin IS NULL THEN a.margin ELSE a.margin + b.margin END AS margin,
  CASE WHEN a.value_total IS NULL THEN b.value_total WHEN b.value_total IS NULL THEN a.value_total ELSE a.value_total + b.value_total END AS value_total,
  CASE WHEN a.purchase_days IS NULL THEN b.purchase_days WHEN b.purchase_days IS NULL THEN a.purchase_days ELSE a.purchase_days + b.purchase_days END AS purchase_days,
  coalesce(a.first_purchase, b.first_purchase) AS first_purchase,
  coalesce(b.last_purchase, a.last_purchase) AS last_purchase,
  CASE
    WHEN a.first_purchase IS NULL THEN b.repeat_value
    WHEN a.first_value IS NULL THEN NULL
    ELSE a.repeat_value + coalesce(b.purchase_value, 0.0)
  END AS repeat_value,
  CASE WHEN a.first_purchase IS NULL THEN b.first_value ELSE a.first_value END AS first_value,
  CASE WHEN a.purchase_value IS NULL THEN b.purchase_value WHEN b.purchase_value IS NULL THEN a.purchase_value ELSE a.purchase_value + b.purchase_value END AS purchase_value,
  CASE WHEN a.cal_purchase_days IS NULL THEN b.cal_purchase_days WHEN b.cal_purchase_days IS NULL THEN a.cal_purchase_days ELSE a.cal_purchase_days + b.cal_purchase_days END AS cal_purchase_days,
  coalesce(b.cal_last_purchase, a.cal_last_purchase) AS cal_last_purchase,
  CASE WHEN a.holdout_purchases IS NULL THEN b.holdout_purchases WHEN b.holdout_purchases IS NULL THEN a.holdout_purchases ELSE a.holdout_purchases + b.holdout_purchases END AS holdout_purchases
FROM customer_state a
FULL OUTER JOIN b ON a.customer_id IS NOT DISTINCT FROM b.customer_id
LEFT JOIN r ON r.customer_id IS NOT DISTINCT FROM coalesce(a.customer_id, b.customer_id)
