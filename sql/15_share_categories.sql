-- Step: each customer's spend by category, as a share of the customer's spend
-- and of the category's revenue.
-- Input:  transactions_clean
-- Output: customer_category_share (customer_id, category ('(none)' when missing),
--         spend, share_of_customer, share_of_category; shares NULL when the total
--         they divide by is not positive)
-- Units: the measured value ($value).
WITH cc AS (
  SELECT customer_id, coalesce(category, '(none)') AS category, sum(value) AS spend
  FROM transactions_clean
  GROUP BY 1, 2
), totals AS (
  SELECT
    *,
    sum(spend) OVER (PARTITION BY customer_id) AS customer_total,
    sum(spend) OVER (PARTITION BY category) AS category_total
  FROM cc
)
SELECT
  customer_id,
  category,
  spend,
  CASE WHEN customer_total > 0 THEN spend / customer_total END AS share_of_customer,
  CASE WHEN category_total > 0 THEN spend / category_total END AS share_of_category
FROM totals
