-- Gate: the newest usable transaction is at most $max_staleness_days days
-- before the as-of date, so a late or missing export stops the run instead of
-- publishing every customer as lapsing.
-- Input:  quality (newest_order_ts DATE, staleness_days BIGINT)
-- Output: one row with a message when the gate fails.
-- Params: $as_of (DATE), $max_staleness_days (BIGINT, days >= 0)
-- Functions: none. Units: days (UTC purchase days). Rows after the as-of date
-- are not usable; without any usable row the transactions_present gate speaks.
SELECT
  'the newest usable transaction is on ' || CAST(newest_order_ts AS VARCHAR)
  || ', ' || CAST(staleness_days AS VARCHAR) || ' days before the as-of date '
  || CAST($as_of AS VARCHAR) || ', above max_staleness_days = '
  || CAST(CAST($max_staleness_days AS BIGINT) AS VARCHAR)
  || ' (a late or missing export? --set max_staleness_days=N accepts older data)' AS message
FROM quality
WHERE newest_order_ts IS NOT NULL
  AND staleness_days > CAST($max_staleness_days AS BIGINT)
