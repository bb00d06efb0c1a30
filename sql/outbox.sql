-- pitstop's transactional outbox: one row per write whose cached answers must go. pitstop writes
-- its rows in the write's own transaction (with its site); the triggers of sql/triggers.sql
-- write rows (site NULL) for changes made by anyone else. Each site's outbox relay delivers every
-- row after its cursor (deletes the Redis entries of the tags, publishes the event) and moves
-- the cursor; `done` says a row was delivered at least once. Delivered rows are purged after
-- invalidation.outbox_retention_s. Idempotent.
CREATE TABLE IF NOT EXISTS `pitstop_outbox` (
  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `tags` longtext NOT NULL,                 -- a JSON array of tags
  `source` varchar(20) NOT NULL,            -- pitstop or trigger
  `site` varchar(255) DEFAULT NULL,         -- the writing pitstop's site (NULL for triggers)
  `created` datetime(6) NOT NULL,
  `done` tinyint(1) NOT NULL DEFAULT 0,
  `done_at` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `pending` (`done`, `id`),
  KEY `done_at` (`done_at`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
ALTER TABLE `pitstop_outbox` ADD COLUMN IF NOT EXISTS `site` varchar(255) DEFAULT NULL AFTER `source`;

-- How far each site's relay has delivered the outbox (instances of one site share it).
CREATE TABLE IF NOT EXISTS `pitstop_outbox_cursor` (
  `site` varchar(255) NOT NULL,
  `last_id` bigint unsigned NOT NULL DEFAULT 0,
  `updated` datetime(6) DEFAULT NULL,
  PRIMARY KEY (`site`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
