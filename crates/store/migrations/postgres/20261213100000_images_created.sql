-- The gallery (GET /v1/images) pages every project's images newest first
-- for admin keys; project keys use images_project_created.
CREATE INDEX images_created ON images (created_at, id);
