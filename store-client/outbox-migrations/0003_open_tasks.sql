-- Tasks not yet terminal, recorded when created, so that after a crash of the process they
-- are ended `failed` (`gateway_restarted`) and stored instead of vanishing. `doc` is the task
-- object (JSON) as created.
CREATE TABLE IF NOT EXISTS open_tasks (
    task_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    doc     TEXT NOT NULL
);
