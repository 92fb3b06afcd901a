-- Step: each customer's spend by category.
-- Input:  transactions_clean
-- Output: category_spend (customer_id, category ('(none)' when missing), spend)
-- Units: the measured value ($value).
SELECT customer_id, coalesce(category, '(none)') AS category, sum(value) AS spend
FROM transactions_clean
GROUP BY 1, 2
