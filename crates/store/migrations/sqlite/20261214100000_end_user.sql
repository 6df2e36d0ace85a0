-- OpenAI's `user` field (issue 20: "`user` recorded"): the end-user id a
-- client sends with a request, on the job and on each of its images, in
-- both modes. `jobs.user_id` is who is accountable for the job (the API
-- key's name with keys on, this same id with keys off) and drives fair
-- sharing and idempotency; `end_user` is only recorded, never trusted.
ALTER TABLE jobs ADD COLUMN end_user TEXT;
ALTER TABLE images ADD COLUMN end_user TEXT;
