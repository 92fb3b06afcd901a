-- Step: the rows that were rejected, as text, with the reason.
-- Input:  transactions_validated
-- Output: rejected_rows (customer_id, order_ts, amount, order_id, category, margin: raw text; reason)
SELECT
  raw_customer_id AS customer_id,
  raw_order_ts AS order_ts,
  raw_amount AS amount,
  raw_order_id AS order_id,
  raw_category AS category,
  raw_margin AS margin,
  reject_reason AS reason
FROM transactions_validated
WHERE reject_reason IS NOT NULL
