-- Options a client of the AUTOMATIC1111-compatible API (`/sdapi/v1`,
-- issue 20) sets with `POST /sdapi/v1/options`, per caller (project and
-- key or user): the web UI keeps them in one global config file, Easel
-- keeps each caller's own so that one caller's model choice never changes
-- another's. `options` is a JSON object of the options Easel honours.
CREATE TABLE client_options (
    caller TEXT PRIMARY KEY,
    options TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
