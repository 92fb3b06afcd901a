-- Step: survivors of each start cohort at the start of each period since.
-- Input:  subscriptions (customer_id, start DATE, end DATE or NULL = still active)
-- Output: subscription_survivors (cohort DATE = first day of the start month,
--         period (0 = cohort size), survivors)
-- Params: $as_of (DATE), $period_months (months per period: 1 monthly, 12 yearly)
-- A subscription is alive at the start of period t when it has not ended, or
-- ended t or more whole periods after its cohort month. Only periods that have
-- fully started by $as_of are counted; cohorts younger than one period are left
-- out (nothing to fit yet). Subscriptions starting after $as_of are ignored.
WITH subs AS (
  SELECT
    CAST(date_part('year', start) * 12 + date_part('month', start) - 1 AS BIGINT) AS cohort_m,
    CASE WHEN "end" IS NULL OR "end" > $as_of THEN NULL
         ELSE CAST(date_part('year', "end") * 12 + date_part('month', "end") - 1 AS BIGINT) END AS end_m
  FROM subscriptions
  WHERE start IS NOT NULL AND start <= $as_of
), aged AS (
  SELECT
    cohort_m,
    CASE WHEN end_m IS NULL THEN NULL ELSE (end_m - cohort_m) / CAST($period_months AS BIGINT) END AS tenure,
    (CAST(date_part('year', $as_of) * 12 + date_part('month', $as_of) - 1 AS BIGINT) - cohort_m)
      / CAST($period_months AS BIGINT) AS observed
  FROM subs
), grid AS (
  SELECT cohort_m, tenure, observed, unnest(range(0, observed + 1)) AS period FROM aged WHERE observed >= 1
)
SELECT
  make_date(CAST(cohort_m / 12 AS INT), CAST(cohort_m % 12 + 1 AS INT), 1) AS cohort,
  period,
  CAST(count(*) FILTER (WHERE tenure IS NULL OR tenure >= period) AS DOUBLE) AS survivors
FROM grid
GROUP BY cohort_m, period
