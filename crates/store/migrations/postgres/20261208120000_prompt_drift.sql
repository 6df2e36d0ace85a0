-- Prompt drift (issue 17): per hour and per API process, the moments of the
-- prompts' sentence embeddings (count, sum vector as a JSON array, sum of
-- squared norms), which add up across processes and hours; and a bounded
-- sample of each hour's prompts with their embeddings, to show which
-- prompts moved the distribution (the text only where
-- `provenance.include_prompt` allows).
CREATE TABLE prompt_moments (
    window_start  BIGINT NOT NULL,
    process       TEXT NOT NULL,
    count         BIGINT NOT NULL,
    sum           TEXT NOT NULL,
    sum_sq        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (window_start, process)
);

CREATE TABLE prompt_samples (
    window_start  BIGINT NOT NULL,
    process       TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    prompt        TEXT,
    prompt_hash   TEXT NOT NULL,
    embedding     TEXT NOT NULL,
    PRIMARY KEY (window_start, process, seq)
);
