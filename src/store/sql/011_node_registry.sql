-- 011_node_registry: what a node says of itself when it starts (fleet mode: several daemons, one
-- database): its Postfix's version and when it started; last_contact is its heartbeat (the worker
-- refreshes it every node_heartbeat_interval; a node silent for three of them is unreachable).
ALTER TABLE nodes ADD COLUMN postfix_version text NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN started_at timestamptz NOT NULL DEFAULT now();
