-- Gate: at least one customer must have a purchase day (all rows returns is
-- not data the models can use).
-- Inputs: rfm, quality. Output: one row with a message when the gate fails.
-- Params: $as_of (DATE)
SELECT
  'no customer has a purchase day on or before ' || CAST($as_of AS VARCHAR)
  || ': all ' || CAST(q.rows_used AS VARCHAR) || ' usable rows are returns (negative amounts)' AS message
FROM quality q
WHERE q.rows_used > 0 AND (SELECT count(*) FROM rfm) = 0
