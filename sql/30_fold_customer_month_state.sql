-- Step (incremental nights, jobs with a customer_months step): tonight's
-- customer_month_state, the customer-month facts of every usable row whose
-- day is before $state_cutoff: the previous night's folded with tonight's
-- month_parts before the new cutoff.
-- Input:  previous_customer_month_state (empty on a full night), month_parts
--         (in_state rows)
-- Output: customer_month_state, one row per (customer_id, m): revenue, active
--         (as 13_tag_customer_months.sql's columns of those names)
-- Params: none.
-- Folding a month's facts `a` of earlier days with `b` of later days: revenue
-- adds (a side whose values are all NULL adds nothing, as sum() skips them),
-- the month is active when either side has a purchase day. The same fold is
-- in 31_merge_customer_months.sql.
WITH b AS (SELECT * FROM month_parts WHERE in_state)
SELECT
  coalesce(a.customer_id, b.customer_id) AS customer_id,
  coalesce(a.m, b.m) AS m,
  CASE WHEN a.revenue IS NULL THEN b.revenue WHEN b.revenue IS NULL THEN a.revenue ELSE a.revenue + b.revenue END AS revenue,
  coalesce(a.active, false) OR coalesce(b.active, false) AS active
FROM previous_customer_month_state a
FULL OUTER JOIN b ON a.customer_id = b.customer_id AND a.m = b.m
