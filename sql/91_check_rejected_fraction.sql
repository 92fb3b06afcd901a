-- Gate: at most $max_rejected_fraction of the rows may be rejected.
-- Input: quality. Output: one row with a message when the gate fails.
-- Params: $max_rejected_fraction (DOUBLE, 0..1)
-- The runner adds the top reasons with an example row each, and where the
-- failed run's rejected rows were kept (OUTPUT/_failed/...).
SELECT
  CAST(rows_rejected AS VARCHAR) || ' of ' || CAST(rows_read AS VARCHAR)
  || ' rows rejected (' || CAST(round(rejected_fraction * 100, 3) AS VARCHAR)
  || '%), above max_rejected_fraction = ' || CAST(CAST($max_rejected_fraction AS DOUBLE) AS VARCHAR) AS message
FROM quality
WHERE rejected_fraction > CAST($max_rejected_fraction AS DOUBLE)
