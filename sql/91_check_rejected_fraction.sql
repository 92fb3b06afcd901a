-- Gate: at most $max_rejected_fraction of the rows may be rejected.
-- Input: quality. Output: one row with a message when the gate fails.
-- Params: $max_rejected_fraction (DOUBLE, 0..1)
SELECT
  CAST(rows_rejected AS VARCHAR) || ' of ' || CAST(rows_read AS VARCHAR)
  || ' rows rejected (' || CAST(round(rejected_fraction * 100, 3) AS VARCHAR)
  || '%), above max_rejected_fraction = ' || CAST(CAST($max_rejected_fraction AS DOUBLE) AS VARCHAR)
  || '; see the reasons with --set max_rejected_fraction=1 and the rejected_rows table' AS message
FROM quality
WHERE rejected_fraction > CAST($max_rejected_fraction AS DOUBLE)
