-- Step: the transactions the models use.
-- Input:  transactions_validated
-- Output: transactions_clean (customer_id, order_ts DATE, day BIGINT days since 1970-01-01,
--         amount, margin, value, order_id, category, peer_group)
-- Params: $as_of (DATE, inclusive), $value ('revenue' or 'margin': what `value` measures)
-- Rows after the as-of date and rows the input's `where` filters out are left
-- out (counted in `quality`); a row that repeats
-- an earlier row of the same order_id exactly (every raw column: line_key) is
-- counted once (export duplicates);
-- rows without order_id are all kept.
WITH valid AS (
  SELECT customer_id, order_ts, amount, margin, order_id, category, peer_group, line_key
  FROM transactions_validated
  WHERE reject_reason IS NULL AND NOT filtered AND order_ts <= $as_of
), deduplicated AS (
  SELECT * FROM valid WHERE order_id IS NULL
  UNION ALL
  SELECT DISTINCT * FROM valid WHERE order_id IS NOT NULL
)
SELECT
  customer_id,
  order_ts,
  CAST(CAST(order_ts AS INT) AS BIGINT) AS day,
  amount,
  margin,
  CASE WHEN CAST($value AS VARCHAR) = 'margin' THEN margin ELSE amount END AS value,
  order_id,
  category,
  peer_group
FROM deduplicated
