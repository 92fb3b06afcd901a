-- Step: each customer's spend by category, as a share of the customer's spend,
-- of the category's revenue, and of the customer's wallet in the category.
-- Inputs: category_spend, wallet_estimates
-- Output: customer_category_share (customer_id, category, spend,
--         share_of_customer, share_of_category, spend_12m, wallet,
--         share_of_wallet; shares NULL when the total they divide by is not
--         positive)
-- Units: the measured value ($value).
-- The category's wallet: the customer's wallet split over the categories the
-- customer has bought in proportion to those categories' totals over all
-- customers (a customer of books and music, where music sells twice what
-- books do, has two thirds of the wallet in music). share_of_wallet:
-- spend_12m / wallet, at most 1.
-- Totals are grouped and joined back rather than computed with
-- sum() OVER (PARTITION BY ...): DataFusion buffers such a window's whole
-- input and emits it as one batch, which the next sort cannot reserve at
-- 100M rows. The customer totals come first in the join, so they are the
-- hash table (the engine has no row-count estimate for a grouped input).
WITH category_totals AS (
  SELECT category, sum(spend) AS category_total FROM category_spend GROUP BY category
), customer_totals AS (
  SELECT
    s.customer_id,
    sum(s.spend) AS customer_total,
    sum(greatest(kt.category_total, 0.0)) AS mix_total
  FROM category_spend s
  JOIN category_totals kt ON kt.category = s.category
  GROUP BY s.customer_id
), shared AS (
  SELECT
    s.customer_id,
    s.category,
    s.spend,
    CASE WHEN ct.customer_total > 0 THEN s.spend / ct.customer_total END AS share_of_customer,
    CASE WHEN kt.category_total > 0 THEN s.spend / kt.category_total END AS share_of_category,
    s.spend_12m,
    CASE WHEN ct.mix_total > 0
         THEN w.wallet * greatest(kt.category_total, 0.0) / ct.mix_total END AS wallet
  FROM customer_totals ct
  JOIN category_spend s ON s.customer_id = ct.customer_id
  JOIN category_totals kt ON kt.category = s.category
  LEFT JOIN wallet_estimates w ON w.customer_id = s.customer_id
)
SELECT
  *,
  CASE WHEN wallet > 0 THEN least(1.0, greatest(spend_12m, 0.0) / wallet) END AS share_of_wallet
FROM shared
