-- The object keys the job's current claim is about to write, recorded
-- before it writes them (a JSON array of strings; empty once the job
-- succeeds). Object keys are named by image ids, fresh for every attempt,
-- so a claim that dies between writing its files and completing leaves
-- files nothing refers to: the worker that claims the job next removes
-- them, found here.
ALTER TABLE jobs ADD COLUMN staged_keys JSONB NOT NULL DEFAULT '[]';
