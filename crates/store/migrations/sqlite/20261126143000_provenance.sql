-- Provenance read-back: `POST /v1/watermark/detect` and `easel verify` look an
-- image up by the payload id its invisible watermark carries. Partial, so the
-- unmarked images (everything stored before watermarking was on) cost nothing.
-- Not UNIQUE: the id space is 48 bits per server, and a lookup that finds two
-- rows answers with the newest rather than refusing to store the second.
CREATE INDEX images_watermark_id ON images (watermark_id, created_at)
    WHERE watermark_id IS NOT NULL;
