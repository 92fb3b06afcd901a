-- Step: how many customers moved between tiers since the previous published
-- partition, and what they are worth.
-- Input:  customer_tiers (previous_tier comes from the latest earlier published
--         partition of customer_tiers, through previous_customer_tiers)
-- Output: tier_transitions (previous_tier: NULL for customers without one, i.e.
--         every customer on a first run and new customers later; tier; customers;
--         clv = their summed CLV; revenue = their summed revenue). One row per
--         (previous_tier, tier) pair that has customers; the customers column
--         sums to the customer count of customer_tiers.
-- Functions: none.
SELECT
  previous_tier,
  tier,
  count(*) AS customers,
  sum(clv) AS clv,
  sum(revenue) AS revenue
FROM customer_tiers
GROUP BY previous_tier, tier
