-- Step: validate every transaction row and name what is wrong with it.
-- Input:  transactions_typed (canonical columns, parsed values, raw_* text,
--         customer_id_too_long, parse_error: why the mapping could not read a
--         value, filtered: left out by the input's `where`, line_key: the raw
--         columns the canonical ones do not carry, telling lines apart)
-- Output: transactions_validated = the input plus reject_reason (NULL = valid,
--         and always NULL for filtered rows, which are neither used nor rejected)
-- Functions: none. Units: order_ts is a DATE (the day in the job's timezone).
SELECT
  customer_id, order_ts, amount, order_id, category, margin, peer_group,
  raw_customer_id, raw_order_ts, raw_amount, raw_order_id, raw_category, raw_margin,
  filtered, line_key,
  CASE
    WHEN filtered THEN NULL
    WHEN customer_id IS NULL AND (raw_customer_id IS NULL OR trim(raw_customer_id) = '') THEN 'missing customer_id'
    WHEN parse_error IS NOT NULL THEN parse_error
    WHEN customer_id IS NULL THEN 'unparseable customer_id'
    WHEN customer_id_too_long THEN 'customer_id longer than 256 characters'
    WHEN order_ts IS NULL AND (raw_order_ts IS NULL OR trim(raw_order_ts) = '') THEN 'missing order_ts'
    WHEN order_ts IS NULL THEN 'unparseable order_ts'
    WHEN order_ts < DATE '1900-01-01' THEN 'order_ts before 1900-01-01'
    WHEN amount IS NULL AND (raw_amount IS NULL OR trim(raw_amount) = '') THEN 'missing amount'
    WHEN amount IS NULL THEN 'unparseable amount'
    WHEN isnan(amount) OR amount = CAST('inf' AS DOUBLE) OR amount = CAST('-inf' AS DOUBLE) THEN 'non-finite amount'
    WHEN margin IS NOT NULL AND (isnan(margin) OR margin = CAST('inf' AS DOUBLE) OR margin = CAST('-inf' AS DOUBLE)) THEN 'non-finite margin'
    ELSE NULL
  END AS reject_reason
FROM transactions_typed
