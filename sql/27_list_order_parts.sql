-- Step (incremental nights, `custval run --incremental`): the order ids with
-- a purchase line among the rows an incremental night reads, what folding
-- `orders` across a cutoff needs: an order id counts once however many days,
-- and sides of a cutoff, its purchase lines fall on (a late line of an order
-- already in the state, an order re-sent on a later day, an order's lines
-- before and after the cutoff).
-- Input:  transactions_validated, only the usable rows (valid, kept by the
--         input's `where`, on or before $as_of) whose day is on or after
--         $previous_cutoff; previous_order_state (the order ids of the
--         previous night's state; empty on a full night)
-- Output: order_parts, one row per (customer_id, order_id) with a purchase
--         line (amount >= 0, as the customer_summary function counts orders)
--         among those rows: order_id (text), in_state (a purchase line whose
--         day is before $state_cutoff: it goes into tonight's order_state),
--         after_state (one on or after it), known (the previous state has
--         the order id: its orders count it already)
-- Params: $as_of, $state_cutoff, $previous_cutoff (DATE)
-- A purchase line is amount >= 0 in IEEE terms (-0.0 included, as the
-- function's `amount >= 0.0`): `amount > 0 OR abs(amount) = 0` says so
-- whatever order the engine compares floats in. order_id is compared as
-- text, one home for both an integer and a text mapping.
WITH read AS (
  SELECT
    customer_id,
    CAST(order_id AS VARCHAR) AS order_id,
    bool_or(order_ts < CAST($state_cutoff AS DATE)) AS in_state,
    bool_or(order_ts >= CAST($state_cutoff AS DATE)) AS after_state
  FROM transactions_validated
  WHERE order_ts >= CAST($previous_cutoff AS DATE)
    AND order_ts <= $as_of
    AND reject_reason IS NULL
    AND NOT filtered
    AND order_id IS NOT NULL
    AND (amount > 0 OR abs(amount) = 0)
  GROUP BY 1, 2
)
SELECT
  r.customer_id,
  r.order_id,
  r.in_state,
  r.after_state,
  p.order_id IS NOT NULL AS known
FROM read r
LEFT JOIN previous_order_state p
  ON (p.customer_id IS NOT DISTINCT FROM r.customer_id) AND p.order_id = r.order_id
