-- GET /api/method/bench.cold?key=k1 — bench/compare's cold-key row only: an origin that takes
-- 20 ms to answer, so that the waiters for one uncached key have something to wait for.
-- @result . merge
SELECT :key AS `key`, SLEEP(0.02) AS `slept`;
