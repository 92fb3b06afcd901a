-- Step (incremental nights): customer_months (13_tag_customer_months.sql's
-- table, the same columns and values up to floating-point summation order)
-- from tonight's customer_month_state and the month parts on or after its
-- cutoff.
-- Input:  customer_month_state, month_parts (rows not in_state)
-- Output: customer_months, as 13_tag_customer_months.sql
-- Params: none.
-- The month facts are folded as in 30_fold_customer_month_state.sql; the
-- tags (first_m, prev_m) are 13's windows over every month of the customer.
WITH b AS (SELECT * FROM month_parts WHERE NOT in_state), cm AS (
  SELECT
    coalesce(a.customer_id, b.customer_id) AS customer_id,
    coalesce(a.m, b.m) AS m,
    CASE WHEN a.revenue IS NULL THEN b.revenue WHEN b.revenue IS NULL THEN a.revenue ELSE a.revenue + b.revenue END AS revenue,
    coalesce(a.active, false) OR coalesce(b.active, false) AS active
  FROM customer_month_state a
  FULL OUTER JOIN b ON a.customer_id = b.customer_id AND a.m = b.m
)
SELECT
  customer_id,
  m,
  revenue,
  active,
  min(CASE WHEN active THEN m END) OVER (
    PARTITION BY customer_id ORDER BY m
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS first_m,
  max(CASE WHEN active THEN m END) OVER (
    PARTITION BY customer_id ORDER BY m
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_m
FROM cm
