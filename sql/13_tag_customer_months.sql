-- Step: each customer's calendar months with any usable row, tagged with
-- whether the customer was active (bought) in the month, the first and the
-- previous active month; shared by the cohort and period-retention tables, so
-- the 20M-row grouping and the per-customer sort run once.
-- Input:  transactions_clean
-- Output: customer_months (customer_id, m = months since year 0 (year * 12 +
--         month - 1), revenue = sum of value in the month (returns included),
--         active = at least one purchase day in the month, first_m = the
--         customer's first active month up to this one (NULL for months before
--         it), prev_m = the active month before this one or NULL)
-- Functions: day_net_amount.
-- Active means bought: a purchase day is a day whose lines net to 0 or more,
-- the rule customer_summary (and so the RFM summary and the models) uses. A
-- month with only returns, or whose days all net below zero, is not active:
-- its revenue still counts in the cohort's revenue from the first active
-- month on, but the customer is neither active, retained nor reactivated in
-- it. (Before this rule a returns-only month counted as active.)
WITH days AS (
  SELECT
    customer_id,
    order_ts,
    sum(value) AS revenue,
    day_net_amount(sum(amount), sum(abs(amount))) >= 0 AS purchase_day
  FROM transactions_clean
  GROUP BY 1, 2
), cm AS (
  SELECT
    customer_id,
    CAST(date_part('year', order_ts) * 12 + date_part('month', order_ts) - 1 AS BIGINT) AS m,
    sum(revenue) AS revenue,
    bool_or(purchase_day) AS active
  FROM days
  GROUP BY 1, 2
)
SELECT
  customer_id,
  m,
  revenue,
  active,
  -- Both windows are running frames ordered by m, so they stream over one
  -- sort: a window over a whole partition (min(m) OVER (PARTITION BY
  -- customer_id)) would be buffered and emitted as one batch the size of the
  -- table.
  min(CASE WHEN active THEN m END) OVER (
    PARTITION BY customer_id ORDER BY m
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS first_m,
  max(CASE WHEN active THEN m END) OVER (
    PARTITION BY customer_id ORDER BY m
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_m
FROM cm
