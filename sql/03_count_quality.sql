-- Step: data-quality counts for the gate, the manifest and the run report.
-- Input:  customer_summary
-- Output: quality (one row): rows_read (rows the input's `where` keeps),
--         rows_rejected, rejected_fraction (of rows_read), rows_after_as_of,
--         duplicate_rows, rows_used, customers, rows_filtered (left out by `where`),
--         newest_order_ts (DATE, the newest usable row's day; NULL without any),
--         staleness_days (BIGINT days from newest_order_ts to $as_of)
-- Params: $as_of_day (BIGINT days since 1970-01-01)
-- Every count comes from customer_summary, which reads each input row once.
WITH c AS (
  SELECT
    coalesce(sum(rows_read), 0) AS rows_read,
    coalesce(sum(rows_filtered), 0) AS rows_filtered,
    coalesce(sum(rows_rejected), 0) AS rows_rejected,
    coalesce(sum(rows_after_as_of), 0) AS rows_after_as_of,
    coalesce(sum(duplicate_lines), 0) AS duplicate_rows,
    coalesce(sum(lines), 0) AS rows_used,
    count(*) FILTER (WHERE lines > 0) AS customers,
    max(newest_order_ts) AS newest_order_ts
  FROM customer_summary
)
SELECT
  rows_read,
  rows_rejected,
  CASE WHEN rows_read = 0 THEN NULL ELSE CAST(rows_rejected AS DOUBLE) / rows_read END AS rejected_fraction,
  rows_after_as_of,
  duplicate_rows,
  rows_used,
  customers,
  rows_filtered,
  newest_order_ts,
  CAST($as_of_day AS BIGINT) - CAST(CAST(newest_order_ts AS INT) AS BIGINT) AS staleness_days
FROM c
