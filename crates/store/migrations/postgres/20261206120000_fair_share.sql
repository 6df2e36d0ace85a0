-- Fair share across every worker (crates/jobs/src/schedule.rs, rule 2):
-- the start-time fair queuing counters of each tier live here rather than
-- in each worker's memory, so workers in several processes plan from the
-- same counters. `Db::charge_fair_share` updates a tier's rows in one
-- transaction after each claim; `Db::fair_shares` reads both tiers.

-- Images served per user in the tier's virtual time. Anonymous jobs share
-- the '' user. Only users above the tier's virtual time have a row: one
-- without a row counts as idle and starts at the virtual time.
CREATE TABLE fair_share (
    tier     TEXT NOT NULL CHECK (tier IN ('realtime', 'batch')),
    user_id  TEXT NOT NULL,
    served   BIGINT NOT NULL CHECK (served >= 0),
    PRIMARY KEY (tier, user_id)
);

-- Each tier's virtual time (the counter of its most recent leader). A tier
-- without a row is at 0: the row is deleted, with the tier's counters, when
-- the tier's queue empties.
CREATE TABLE fair_share_vtime (
    tier   TEXT NOT NULL PRIMARY KEY CHECK (tier IN ('realtime', 'batch')),
    vtime  BIGINT NOT NULL CHECK (vtime >= 0)
);
