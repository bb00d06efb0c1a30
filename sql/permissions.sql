-- pitstop: the sample site's permissions, as the ERP keeps them (tabDocPerm, tabDocField,
-- tabUser Permission, tabDocShare). They say what rules/workshop.json's `permissions` say (every
-- user reads; writes by role), plus what shows the rest of Frappe's model:
--   * Customer.credit_limit is at permission level 1: Workshop Managers read and write it,
--     Service Advisors read it, everyone else never sees it;
--   * branch.advisor@workshop.test (Service Advisor) is restricted by user permissions to the
--     customers CUST-00001 .. CUST-00005: their customers, vehicles and service orders only;
--   * SO-2026-00010 (customer CUST-00011) is shared with the branch advisor (read), which opens it
--     despite the restriction.
-- Idempotent: rows named pitstop-sample-* are replaced; rows of any other name are left alone.
-- Written around the outbox triggers (@pitstop_sample_loading): a load is not a change to relay.

SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;
SET @pitstop_sample_loading = 1;

DELETE FROM `tabDocPerm` WHERE `name` LIKE 'pitstop-sample-%';
DELETE FROM `tabDocField` WHERE `name` LIKE 'pitstop-sample-%';
DELETE FROM `tabUser Permission` WHERE `name` LIKE 'pitstop-sample-%';
DELETE FROM `tabDocShare` WHERE `name` LIKE 'pitstop-sample-%';
DELETE FROM `tabHas Role` WHERE `name` LIKE 'pitstop-sample-%';

-- Rights: (doctype, idx, role, level, read, write, create, delete, submit, cancel).
CREATE TEMPORARY TABLE t_perm (dt VARCHAR(140), idx INT, role VARCHAR(140), lvl INT, r INT, w INT, c INT, d INT, s INT, x INT);
INSERT INTO t_perm VALUES
  ('Customer', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Customer', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 0, 0),
  ('Customer', 3, 'Service Advisor', 0, 1, 1, 1, 0, 0, 0),
  ('Customer', 4, 'Workshop Manager', 1, 1, 1, 0, 0, 0, 0),
  ('Customer', 5, 'Service Advisor', 1, 1, 0, 0, 0, 0, 0),
  ('Vehicle', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Vehicle', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 0, 0),
  ('Vehicle', 3, 'Service Advisor', 0, 1, 1, 1, 0, 0, 0),
  ('Service Type', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Service Type', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 0, 0),
  ('Technician', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Technician', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 0, 0),
  ('Item', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Item', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 0, 0),
  ('Bin', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Bin', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 0, 0),
  ('Bin', 3, 'Service Advisor', 0, 1, 1, 0, 0, 0, 0),
  ('Service Order', 1, 'All', 0, 1, 0, 0, 0, 0, 0),
  ('Service Order', 2, 'Workshop Manager', 0, 1, 1, 1, 1, 1, 1),
  ('Service Order', 3, 'Service Advisor', 0, 1, 1, 1, 0, 1, 0),
  ('Service Order', 4, 'Technician', 0, 1, 1, 0, 0, 0, 0);
INSERT INTO `tabDocPerm` (name, creation, modified, modified_by, owner, idx, parent, parenttype, parentfield, role, permlevel,
                          `select`, `read`, `write`, `create`, `delete`, `submit`, `cancel`, `report`, `export`, `print`, `email`, `share`)
SELECT CONCAT('pitstop-sample-', REPLACE(LOWER(dt), ' ', '-'), '-', idx), TIMESTAMP'2025-12-31 15:00:00',
       TIMESTAMP'2025-12-31 15:00:00', 'Administrator', 'Administrator', idx, dt, 'DocType', 'permissions', role, lvl,
       r, r, w, c, d, s, x, r, r, r, r, w
FROM t_perm;
DROP TEMPORARY TABLE t_perm;

-- The fields permissions look at: Link fields (user permissions), Table fields (child rows) and
-- the one field above level 0. (doctype, idx, fieldname, fieldtype, options, level)
CREATE TEMPORARY TABLE t_field (dt VARCHAR(140), idx INT, fn VARCHAR(140), ft VARCHAR(140), opt VARCHAR(140), lvl INT);
INSERT INTO t_field VALUES
  ('Customer', 1, 'customer_name', 'Data', NULL, 0),
  ('Customer', 2, 'credit_limit', 'Currency', NULL, 1),
  ('Vehicle', 1, 'customer', 'Link', 'Customer', 0),
  ('Technician', 1, 'skills', 'Table', 'Technician Skill', 0),
  ('Technician Skill', 1, 'service_type', 'Link', 'Service Type', 0),
  ('Bin', 1, 'item_code', 'Link', 'Item', 0),
  ('Service Order', 1, 'customer', 'Link', 'Customer', 0),
  ('Service Order', 2, 'vehicle', 'Link', 'Vehicle', 0),
  ('Service Order', 3, 'technician_assigned', 'Link', 'Technician', 0),
  ('Service Order', 4, 'service_type', 'Link', 'Service Type', 0),
  ('Service Order', 5, 'items', 'Table', 'Service Order Item', 0),
  ('Service Order Item', 1, 'item_code', 'Link', 'Item', 0);
INSERT INTO `tabDocField` (name, creation, modified, modified_by, owner, idx, parent, parenttype, parentfield, fieldname, label,
                           fieldtype, options, permlevel)
SELECT CONCAT('pitstop-sample-', REPLACE(LOWER(dt), ' ', '-'), '-', fn), TIMESTAMP'2025-12-31 15:00:00',
       TIMESTAMP'2025-12-31 15:00:00', 'Administrator', 'Administrator', idx, dt, 'DocType', 'fields', fn,
       REPLACE(fn, '_', ' '), ft, opt, lvl
FROM t_field;
DROP TEMPORARY TABLE t_field;

-- The branch advisor: a Service Advisor who sees five customers.
INSERT IGNORE INTO `tabUser` (name, creation, modified, modified_by, owner, enabled, email, first_name, last_name, full_name,
                              username, send_welcome_email, user_type)
VALUES ('branch.advisor@workshop.test', TIMESTAMP'2025-12-31 15:00:00', TIMESTAMP'2025-12-31 15:00:00', 'Administrator',
        'Administrator', 1, 'branch.advisor@workshop.test', 'Branch', 'Advisor', 'Branch Advisor', 'branch.advisor', 0,
        'System User');
INSERT INTO `tabHas Role` (name, creation, modified, modified_by, owner, idx, role, parent, parentfield, parenttype)
VALUES ('pitstop-sample-branch-advisor-1', TIMESTAMP'2025-12-31 15:00:00', TIMESTAMP'2025-12-31 15:00:00', 'Administrator',
        'Administrator', 1, 'Service Advisor', 'branch.advisor@workshop.test', 'roles', 'User');
INSERT INTO `tabUser Permission` (name, creation, modified, modified_by, owner, user, allow, for_value, is_default,
                                  apply_to_all_doctypes, applicable_for)
SELECT CONCAT('pitstop-sample-branch-advisor-', seq), TIMESTAMP'2025-12-31 15:00:00', TIMESTAMP'2025-12-31 15:00:00',
       'Administrator', 'Administrator', 'branch.advisor@workshop.test', 'Customer', CONCAT('CUST-', LPAD(seq, 5, '0')), 0, 1, NULL
FROM seq_1_to_5;
INSERT INTO `tabDocShare` (name, creation, modified, modified_by, owner, user, share_doctype, share_name, `read`, `write`,
                           `share`, `submit`, everyone, notify_by_email)
VALUES ('pitstop-sample-share-1', TIMESTAMP'2025-12-31 15:00:00', TIMESTAMP'2025-12-31 15:00:00', 'Administrator',
        'Administrator', 'branch.advisor@workshop.test', 'Service Order', 'SO-2026-00010', 1, 0, 0, 0, 0, 0);

SET @pitstop_sample_loading = NULL;
