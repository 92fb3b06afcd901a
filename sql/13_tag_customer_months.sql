-- Step: each customer's calendar months with any usable row, tagged with
-- whether the customer was active (bought) in the month, the first and the
-- previous active month; shared by the cohort and period-retention tables, so
-- the 20M-row grouping and the per-customer sort run once.
-- Inputs: transactions_clean, customer_summary (first_purchase: the first
--         purchase day, by the same day rule)
-- Output: customer_months (customer_id, m = months since year 0 (year * 12 +
--         month - 1), revenue = sum of value in the month (returns included),
--         active = at least one purchase day in the month, first_m = the
--         customer's first active month when it is this one or earlier (NULL
--         for months before it), prev_m = for an active month, the active
--         month before it (NULL for the first, and for months not active))
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
  c.customer_id,
  c.m,
  c.revenue,
  c.active,
  -- The first active month is the month of the customer's first purchase
  -- day, which customer_summary already has: a join on the customer rather
  -- than a running min(m) OVER (PARTITION BY customer_id ORDER BY m).
  CASE WHEN c.m >= f.first_m THEN f.first_m END AS first_m,
  -- The active month before: the row before in the order (customer, active,
  -- month), when that row is the same customer's and active. One window over
  -- a global order, not PARTITION BY customer_id: DataFusion's streaming
  -- window keeps state per partition key, and with a million customers of a
  -- few months each that cost 18 s of this step's 26 (BENCHMARKS.md,
  -- "Profile of the nightly job"); the sort and lag here take about 3 s.
  CASE WHEN c.active AND lag(c.active) OVER w AND lag(c.customer_id) OVER w = c.customer_id
       THEN lag(c.m) OVER w END AS prev_m
FROM cm c
LEFT JOIN (
  SELECT
    customer_id,
    CAST(date_part('year', first_purchase) * 12 + date_part('month', first_purchase) - 1 AS BIGINT) AS first_m
  FROM customer_summary
  WHERE first_purchase IS NOT NULL
) f ON f.customer_id = c.customer_id
WINDOW w AS (ORDER BY c.customer_id, c.active, c.m)
