-- Gate: there must be transactions to analyse.
-- Input: quality. Output: one row with a message when the gate fails.
-- Params: $as_of (DATE)
SELECT
  'no usable transactions on or before ' || CAST($as_of AS VARCHAR)
  || ' (' || CAST(rows_read AS VARCHAR) || ' rows read, '
  || CAST(rows_rejected AS VARCHAR) || ' rejected, '
  || CAST(rows_after_as_of AS VARCHAR) || ' after the as-of date)' AS message
FROM quality
WHERE rows_used = 0
