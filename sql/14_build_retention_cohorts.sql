-- Step: monthly acquisition cohorts and their activity in each month since.
-- Input:  customer_months
-- Output: retention_cohorts (cohort DATE = first purchase month, period = months
--         since, cohort_size, active_customers (bought in the month: customer_months'
--         `active`), retention_rate = active_customers /
--         cohort_size (customer retention: at most 1, 1 in period 0; a customer
--         back after a gap counts as active again), revenue, revenue_retention =
--         revenue / the cohort's first-month revenue (revenue retention: above 1
--         when the remaining customers spend more than the cohort did in its
--         first month; NULL when that first month's revenue is not positive);
--         revenue is net of returns, a returns-only month's included; months
--         before a customer's first active month belong to no cohort)
-- Params: $as_of (DATE): periods run up to the as-of month, zero rows included.
WITH tagged AS (
  SELECT customer_id, m, revenue, active, first_m AS cohort_m
  FROM customer_months
  WHERE first_m IS NOT NULL
), cells AS (
  SELECT cohort_m, m - cohort_m AS period, count(*) FILTER (WHERE active) AS active_customers, sum(revenue) AS revenue
  FROM tagged
  GROUP BY 1, 2
), cohorts AS (
  SELECT cohort_m, active_customers AS cohort_size, revenue AS first_revenue
  FROM cells WHERE period = 0
), grid AS (
  SELECT
    cohort_m, cohort_size, first_revenue,
    unnest(range(0, CAST(date_part('year', $as_of) * 12 + date_part('month', $as_of) - 1 AS BIGINT) - cohort_m + 1)) AS period
  FROM cohorts
)
SELECT
  make_date(CAST(g.cohort_m / 12 AS INT), CAST(g.cohort_m % 12 + 1 AS INT), 1) AS cohort,
  g.period,
  g.cohort_size,
  coalesce(c.active_customers, 0) AS active_customers,
  CAST(coalesce(c.active_customers, 0) AS DOUBLE) / g.cohort_size AS retention_rate,
  coalesce(c.revenue, 0.0) AS revenue,
  CASE WHEN g.first_revenue > 0 THEN coalesce(c.revenue, 0.0) / g.first_revenue END AS revenue_retention
FROM grid g
LEFT JOIN cells c ON c.cohort_m = g.cohort_m AND c.period = g.period
