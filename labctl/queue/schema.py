"""The job store's own small schema, one text for both backends.

Why not a task-queue library: those re-deliver a task whose worker is slow or silent, and a
cell must never be driven twice. Here a job is claimed once, and a dead worker's job becomes
``interrupted`` with its channel held until a technician looks at the cell.

The partial unique index ``jobs_one_active_per_channel`` is the rule "at most one job holds a
channel", enforced by the database itself in both backends, whatever the code above it does.
"""

from __future__ import annotations

#: Bump when the schema changes; a store refuses to open a newer schema than it knows.
SCHEMA_VERSION = 1

_STATES = "'queued','running','pausing','paused','completed','failed','aborted','cancelled','interrupted'"
ACTIVE_SQL = "('running','pausing','paused')"
FINISHED_SQL = "('completed','failed','aborted','cancelled','interrupted')"

_TABLES = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id {id_column},
    position BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    params TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    electrolyte TEXT NOT NULL DEFAULT '',
    notes TEXT NOT NULL DEFAULT '',
    requested_channel TEXT,
    channel TEXT,
    on_failure TEXT NOT NULL CHECK (on_failure IN ('stop','continue','retry')),
    not_before DOUBLE PRECISION,
    state TEXT NOT NULL CHECK (state IN ({states})),
    request TEXT CHECK (request IN ('pause','resume','cancel')),
    worker TEXT,
    heartbeat DOUBLE PRECISION,
    created DOUBLE PRECISION NOT NULL,
    started DOUBLE PRECISION,
    finished DOUBLE PRECISION,
    file TEXT,
    results TEXT,
    error TEXT,
    fraction DOUBLE PRECISION,
    step TEXT,
    eta DOUBLE PRECISION,
    attempt INTEGER NOT NULL DEFAULT 1,
    retry_of BIGINT REFERENCES jobs(id) ON DELETE SET NULL,
    CHECK (state NOT IN {active} OR (channel IS NOT NULL AND worker IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_per_channel ON jobs (channel) WHERE state IN {active};
CREATE INDEX IF NOT EXISTS jobs_queue_order ON jobs (state, requested_channel, position, id);
CREATE INDEX IF NOT EXISTS jobs_worker ON jobs (worker) WHERE state IN {active};
CREATE TABLE IF NOT EXISTS job_deps (
    job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    depends_on BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, depends_on)
);
CREATE INDEX IF NOT EXISTS job_deps_depends_on ON job_deps (depends_on);
CREATE TABLE IF NOT EXISTS channel_holds (
    channel TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    job_id BIGINT,
    since DOUBLE PRECISION NOT NULL
);
"""


def schema_statements(id_column: str) -> list[str]:
    """The CREATE statements for a backend whose auto-increment key column is ``id_column``."""
    text = _TABLES.format(id_column=id_column, states=_STATES, active=ACTIVE_SQL)
    return [statement.strip() for statement in text.split(";") if statement.strip()]
