-- Step (incremental nights): tonight's order_state, the order ids with a
-- purchase line on a day before $state_cutoff, per customer: the previous
-- night's and those of tonight's rows before the new cutoff that it did not
-- have. What lets the next night count an order id once when more of its
-- lines come on later days (27_list_order_parts.sql).
-- Input:  previous_order_state (empty on a full night), order_parts
-- Output: order_state, one row per (customer_id, order_id): order_id as text
-- Params: none.
SELECT customer_id, order_id FROM previous_order_state
UNION ALL
SELECT customer_id, order_id FROM order_parts WHERE in_state AND NOT known
