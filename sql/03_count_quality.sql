-- Step: data-quality counts for the gate, the manifest and the run report.
-- Inputs: transactions_validated, customer_summary
-- Output: quality (one row): rows_read, rows_rejected, rejected_fraction,
--         rows_after_as_of, duplicate_rows, rows_used, customers
-- Params: $as_of (DATE)
WITH v AS (
  SELECT
    count(*) AS rows_read,
    count(*) FILTER (WHERE reject_reason IS NOT NULL) AS rows_rejected,
    count(*) FILTER (WHERE reject_reason IS NULL AND order_ts > $as_of) AS rows_after_as_of
  FROM transactions_validated
), c AS (
  SELECT coalesce(sum(lines), 0) AS rows_used, count(*) AS customers FROM customer_summary
)
SELECT
  v.rows_read,
  v.rows_rejected,
  CASE WHEN v.rows_read = 0 THEN NULL ELSE CAST(v.rows_rejected AS DOUBLE) / v.rows_read END AS rejected_fraction,
  v.rows_after_as_of,
  v.rows_read - v.rows_rejected - v.rows_after_as_of - c.rows_used AS duplicate_rows,
  c.rows_used,
  c.customers
FROM v CROSS JOIN c
