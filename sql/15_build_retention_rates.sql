-- Step: period retention and churn per calendar month.
-- Input:  customer_months
-- Output: retention_rates (period_start DATE; customers_start S = active in the
--   previous month; customers_new N = first purchase this month; customers_end E =
--   active this month (bought: customer_months' `active`, a returns-only
--   month is not active); retained = active in both months; reactivated = active
--   this month, not in the previous one, and not new, so E = N + retained +
--   reactivated; retention_rate = retained / S (at most 1); churn_rate =
--   1 - retention_rate, so the two always add up to 1; crr_formula = (E - N) / S,
--   the textbook customer retention rate, which counts reactivated customers as
--   retained and so can exceed 1; repeat_purchase_rate = (E - N) / E).
--   Rates are NULL when their base is 0.
-- Params: $as_of (DATE): months run up to the as-of month, empty months included.
WITH tagged AS (
  SELECT m, first_m, prev_m FROM customer_months WHERE active
), per AS (
  SELECT
    m,
    count(*) AS customers_end,
    count(*) FILTER (WHERE m = first_m) AS customers_new,
    count(*) FILTER (WHERE prev_m = m - 1) AS retained,
    count(*) FILTER (WHERE prev_m < m - 1) AS reactivated
  FROM tagged
  GROUP BY m
), months AS (
  SELECT unnest(range(
    min(m),
    CAST(date_part('year', $as_of) * 12 + date_part('month', $as_of) - 1 AS BIGINT) + 1)) AS m
  FROM per
  HAVING count(*) > 0
), filled AS (
  SELECT
    months.m,
    coalesce(per.customers_end, 0) AS customers_end,
    coalesce(per.customers_new, 0) AS customers_new,
    coalesce(per.retained, 0) AS retained,
    coalesce(per.reactivated, 0) AS reactivated
  FROM months LEFT JOIN per ON per.m = months.m
), with_start AS (
  SELECT *, coalesce(lag(customers_end) OVER (ORDER BY m), 0) AS customers_start FROM filled
)
SELECT
  make_date(CAST(m / 12 AS INT), CAST(m % 12 + 1 AS INT), 1) AS period_start,
  customers_start,
  customers_new,
  customers_end,
  retained,
  reactivated,
  CASE WHEN customers_start > 0 THEN CAST(retained AS DOUBLE) / customers_start END AS retention_rate,
  CASE WHEN customers_start > 0 THEN 1.0 - CAST(retained AS DOUBLE) / customers_start END AS churn_rate,
  CASE WHEN customers_start > 0 THEN CAST(customers_end - customers_new AS DOUBLE) / customers_start END AS crr_formula,
  CASE WHEN customers_end > 0 THEN CAST(customers_end - customers_new AS DOUBLE) / customers_end END AS repeat_purchase_rate
FROM with_start
