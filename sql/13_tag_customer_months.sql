-- Step: each customer's active calendar months, tagged with the first and the
-- previous active month; shared by the cohort and period-retention tables, so
-- the 20M-row grouping and the per-customer sort run once.
-- Input:  transactions_clean
-- Output: customer_months (customer_id, m = months since year 0 (year * 12 +
--         month - 1), revenue = sum of value in the month, first_m = the
--         customer's first active month, prev_m = the previous active month
--         or NULL)
-- Functions: none.
WITH cm AS (
  SELECT
    customer_id,
    CAST(date_part('year', order_ts) * 12 + date_part('month', order_ts) - 1 AS BIGINT) AS m,
    sum(value) AS revenue
  FROM transactions_clean
  GROUP BY 1, 2
)
SELECT
  customer_id,
  m,
  revenue,
  -- Both windows ordered by m, so they stream over one sort: a window over
  -- a whole partition (min(m) OVER (PARTITION BY customer_id)) would be
  -- buffered and emitted as one batch the size of the table.
  first_value(m) OVER (PARTITION BY customer_id ORDER BY m) AS first_m,
  lag(m) OVER (PARTITION BY customer_id ORDER BY m) AS prev_m
FROM cm
