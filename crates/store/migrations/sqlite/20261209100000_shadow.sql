-- Shadow rollouts (docs/rollouts.md): a share of a model's requests also
-- runs on the candidate version as a job of its own, in the batch tier,
-- owned by the reserved project `easel-shadow` so that no user lists,
-- fetches or pays for it. `shadow_of` is the user's job it shadows.
INSERT INTO projects (id, created_at) VALUES ('easel-shadow', CAST(unixepoch('subsec') * 1000 AS INTEGER));
ALTER TABLE jobs ADD COLUMN shadow_of TEXT;
CREATE INDEX jobs_shadow_of ON jobs (shadow_of) WHERE shadow_of IS NOT NULL;
