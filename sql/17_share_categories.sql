-- Step: each customer's spend by category, as a share of the customer's spend
-- and of the category's revenue.
-- Input:  category_spend
-- Output: customer_category_share (customer_id, category, spend,
--         share_of_customer, share_of_category; shares NULL when the total
--         they divide by is not positive)
-- Units: the measured value ($value).
-- Totals are grouped and joined back rather than computed with
-- sum() OVER (PARTITION BY ...): DataFusion buffers such a window's whole
-- input and emits it as one batch, which the next sort cannot reserve at
-- 100M rows. The customer totals come first in the join, so they are the
-- hash table (the engine has no row-count estimate for a grouped input).
WITH customer_totals AS (
  SELECT customer_id, sum(spend) AS customer_total FROM category_spend GROUP BY customer_id
), category_totals AS (
  SELECT category, sum(spend) AS category_total FROM category_spend GROUP BY category
)
SELECT
  s.customer_id,
  s.category,
  s.spend,
  CASE WHEN ct.customer_total > 0 THEN s.spend / ct.customer_total END AS share_of_customer,
  CASE WHEN kt.category_total > 0 THEN s.spend / kt.category_total END AS share_of_category
FROM customer_totals ct
JOIN category_spend s ON s.customer_id = ct.customer_id
JOIN category_totals kt ON kt.category = s.category
