-- The quality SLI: how well each image shows its prompt, the cosine of the
-- scorer's image and text embeddings in [-1, 1]. NULL when the model has no
-- scorer or scoring was off.
ALTER TABLE images ADD COLUMN quality_score REAL;
