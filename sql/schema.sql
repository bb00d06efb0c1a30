-- pitstop: the tables of the Universal Workshop ERP that pitstop reads and writes, exactly as
-- Frappe stores them on MariaDB, so that pitstop's `sql` origin and the real ERP share one database.
--
-- What this mirrors:
--   * Doctype tables as frappe/database/mariadb/schema.py (MariaDBTable.create) builds them:
--     `tab<DocType>`, `name varchar(140)` primary key, the standard columns creation, modified,
--     modified_by, owner, docstatus, idx; data columns typed by Frappe's MariaDB type map
--     (frappe/database/mariadb/database.py) with frappe/database/schema.py's NOT NULL/DEFAULT
--     rules (Check/Int/Currency/Float are NOT NULL with a numeric default; a field's static
--     default becomes the column default; `unique` fields get a UNIQUE key named after the
--     column; `search_index` fields an index named after the column); the optional columns
--     _user_tags, _comments, _assign, _liked_by (Text) on non-child tables; parent, parentfield,
--     parenttype + KEY parent on child tables; KEY modified on every doctype table.
--   * Framework tables verbatim from frappe/database/mariadb/framework_mariadb.sql:
--     tabSeries, tabSessions, __Auth.
--   * Core doctypes from their JSON: User (frappe/core/doctype/user/user.json), Has Role, Role,
--     OAuth Bearer Token (frappe/integrations/doctype/oauth_bearer_token/oauth_bearer_token.json);
--     ERPNext's Item and Bin (only the columns pitstop uses).
--   * The Universal Workshop doctypes (Customer, Vehicle, Service Type, Technician, Technician
--     Skill, Service Order, Service Order Item) with the fields pitstop uses.
-- Idempotent: CREATE TABLE IF NOT EXISTS only; extra indexes live in sql/indexes.sql.

SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------
-- Framework tables (framework_mariadb.sql)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS `tabSeries` (
  `name` varchar(100) NOT NULL,
  `current` int(10) NOT NULL DEFAULT 0,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tabSessions` (
  `user` varchar(255) DEFAULT NULL,
  `sid` varchar(255) DEFAULT NULL,
  `sessiondata` longtext,
  `ipaddress` varchar(16) DEFAULT NULL,
  `lastupdate` datetime(6) DEFAULT NULL,
  `device` varchar(255) DEFAULT 'desktop',
  `status` varchar(20) DEFAULT NULL,
  KEY `sid` (`sid`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Encrypted secrets (api_secret, passwords) of any doctype: Frappe's frappe.utils.password.
CREATE TABLE IF NOT EXISTS `__Auth` (
  `doctype` varchar(140) NOT NULL,
  `name` varchar(255) NOT NULL,
  `fieldname` varchar(140) NOT NULL,
  `password` text NOT NULL,
  `encrypted` int(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`doctype`, `name`, `fieldname`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------
-- Users, roles, tokens (Frappe core)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS `tabUser` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `enabled` int(1) NOT NULL DEFAULT 1,
  `email` varchar(140) DEFAULT NULL,
  `first_name` varchar(140) DEFAULT NULL,
  `middle_name` varchar(140) DEFAULT NULL,
  `last_name` varchar(140) DEFAULT NULL,
  `full_name` varchar(140) DEFAULT NULL,
  `username` varchar(140) DEFAULT NULL,
  `language` varchar(140) DEFAULT NULL,
  `time_zone` varchar(140) DEFAULT NULL,
  `send_welcome_email` int(1) NOT NULL DEFAULT 1,
  `unsubscribed` int(1) NOT NULL DEFAULT 0,
  `user_image` text,
  `role_profile_name` varchar(140) DEFAULT NULL,
  `gender` varchar(140) DEFAULT NULL,
  `birth_date` date DEFAULT NULL,
  `interest` text,
  `banner_image` text,
  `desk_theme` varchar(140) DEFAULT NULL,
  `phone` varchar(140) DEFAULT NULL,
  `location` varchar(140) DEFAULT NULL,
  `bio` text,
  `mute_sounds` int(1) NOT NULL DEFAULT 0,
  `mobile_no` varchar(140) DEFAULT NULL,
  `new_password` text,
  `logout_all_sessions` int(1) NOT NULL DEFAULT 1,
  `reset_password_key` varchar(140) DEFAULT NULL,
  `last_password_reset_date` date DEFAULT NULL,
  `redirect_url` text,
  `document_follow_notify` int(1) NOT NULL DEFAULT 0,
  `document_follow_frequency` varchar(140) DEFAULT 'Daily',
  `email_signature` text,
  `thread_notify` int(1) NOT NULL DEFAULT 1,
  `send_me_a_copy` int(1) NOT NULL DEFAULT 0,
  `allowed_in_mentions` int(1) NOT NULL DEFAULT 1,
  `module_profile` varchar(140) DEFAULT NULL,
  `home_settings` longtext,
  `simultaneous_sessions` int(11) NOT NULL DEFAULT 1,
  `restrict_ip` varchar(140) DEFAULT NULL,
  `last_ip` varchar(140) DEFAULT NULL,
  `login_after` int(11) NOT NULL DEFAULT 0,
  `user_type` varchar(140) DEFAULT 'System User',
  `last_active` datetime(6) DEFAULT NULL,
  `login_before` int(11) NOT NULL DEFAULT 0,
  `bypass_restrict_ip_check_if_2fa_enabled` int(1) NOT NULL DEFAULT 0,
  `last_login` varchar(140) DEFAULT NULL,
  `last_known_versions` text,
  `api_key` varchar(140) DEFAULT NULL,
  `api_secret` text,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  UNIQUE KEY `username` (`username`),
  UNIQUE KEY `mobile_no` (`mobile_no`),
  UNIQUE KEY `api_key` (`api_key`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tabRole` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `role_name` varchar(140) DEFAULT NULL,
  `home_page` varchar(140) DEFAULT NULL,
  `restrict_to_domain` varchar(140) DEFAULT NULL,
  `disabled` int(1) NOT NULL DEFAULT 0,
  `is_custom` int(1) NOT NULL DEFAULT 0,
  `desk_access` int(1) NOT NULL DEFAULT 1,
  `two_factor_auth` int(1) NOT NULL DEFAULT 0,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Child of User (parenttype 'User', parentfield 'roles').
CREATE TABLE IF NOT EXISTS `tabHas Role` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `role` varchar(140) DEFAULT NULL,
  `parent` varchar(140) DEFAULT NULL,
  `parentfield` varchar(140) DEFAULT NULL,
  `parenttype` varchar(140) DEFAULT NULL,
  PRIMARY KEY (`name`),
  KEY `parent` (`parent`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- user is not_nullable (NOT NULL DEFAULT ''), user and expiration_time have search_index,
-- access_token and refresh_token are unique.
CREATE TABLE IF NOT EXISTS `tabOAuth Bearer Token` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `client` varchar(140) DEFAULT NULL,
  `user` varchar(140) NOT NULL DEFAULT '',
  `scopes` text,
  `access_token` varchar(140) DEFAULT NULL,
  `refresh_token` varchar(140) DEFAULT NULL,
  `expiration_time` datetime(6) DEFAULT NULL,
  `expires_in` int(11) NOT NULL DEFAULT 0,
  `status` varchar(140) DEFAULT NULL,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  UNIQUE KEY `access_token` (`access_token`),
  UNIQUE KEY `refresh_token` (`refresh_token`),
  KEY `user` (`user`),
  KEY `expiration_time` (`expiration_time`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------
-- Universal Workshop doctypes
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS `tabCustomer` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `customer_name` varchar(140) DEFAULT NULL,
  `customer_type` varchar(140) DEFAULT NULL,
  `customer_group` varchar(140) DEFAULT NULL,
  `mobile_no` varchar(140) DEFAULT NULL,
  `email_id` varchar(140) DEFAULT NULL,
  `territory` varchar(140) DEFAULT NULL,
  `credit_limit` decimal(21,9) NOT NULL DEFAULT 0,
  `disabled` int(1) NOT NULL DEFAULT 0,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Added after the first release of this schema: databases created before get the column too.
-- credit_limit is at permission level 1 in the sample site (sql/permissions.sql).
ALTER TABLE `tabCustomer` ADD COLUMN IF NOT EXISTS `credit_limit` decimal(21,9) NOT NULL DEFAULT 0 AFTER `territory`;

CREATE TABLE IF NOT EXISTS `tabVehicle` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `license_plate` varchar(140) DEFAULT NULL,
  `vin` varchar(140) DEFAULT NULL,
  `make` varchar(140) DEFAULT NULL,
  `model` varchar(140) DEFAULT NULL,
  `year` int(11) NOT NULL DEFAULT 0,
  `customer` varchar(140) DEFAULT NULL,
  `odometer` int(11) NOT NULL DEFAULT 0,
  `color` varchar(140) DEFAULT NULL,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Named by service_name (autoname field:service_name).
CREATE TABLE IF NOT EXISTS `tabService Type` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `service_name` varchar(140) DEFAULT NULL,
  `description` text,
  `standard_price` decimal(21,9) NOT NULL DEFAULT 0,
  `duration_minutes` int(11) NOT NULL DEFAULT 0,
  `category` varchar(140) DEFAULT NULL,
  `is_active` int(1) NOT NULL DEFAULT 1,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tabTechnician` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `technician_name` varchar(140) DEFAULT NULL,
  `employee` varchar(140) DEFAULT NULL,
  `status` varchar(140) DEFAULT 'Active',
  `phone` varchar(140) DEFAULT NULL,
  `email` varchar(140) DEFAULT NULL,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Child of Technician (parenttype 'Technician', parentfield 'skills'); level is 1..5.
CREATE TABLE IF NOT EXISTS `tabTechnician Skill` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `skill` varchar(140) DEFAULT NULL,
  `level` int(11) NOT NULL DEFAULT 0,
  `certified` int(1) NOT NULL DEFAULT 0,
  `service_type` varchar(140) DEFAULT NULL,
  `parent` varchar(140) DEFAULT NULL,
  `parentfield` varchar(140) DEFAULT NULL,
  `parenttype` varchar(140) DEFAULT NULL,
  PRIMARY KEY (`name`),
  KEY `parent` (`parent`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ERPNext Item (autoname field:item_code): item_code is unique, item_name, item_group and
-- disabled have search_index, description is a Text Editor (longtext), is_stock_item defaults to 1.
CREATE TABLE IF NOT EXISTS `tabItem` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `item_code` varchar(140) DEFAULT NULL,
  `item_name` varchar(140) DEFAULT NULL,
  `item_group` varchar(140) DEFAULT NULL,
  `stock_uom` varchar(140) DEFAULT NULL,
  `standard_rate` decimal(21,9) NOT NULL DEFAULT 0,
  `is_stock_item` int(1) NOT NULL DEFAULT 1,
  `disabled` int(1) NOT NULL DEFAULT 0,
  `description` longtext,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  UNIQUE KEY `item_code` (`item_code`),
  KEY `item_name` (`item_name`),
  KEY `item_group` (`item_group`),
  KEY `disabled` (`disabled`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ERPNext Bin: stock of one item in one warehouse (unique_item_warehouse in sql/indexes.sql).
-- projected_qty = actual_qty + ordered_qty - reserved_qty for the columns kept here.
CREATE TABLE IF NOT EXISTS `tabBin` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `item_code` varchar(140) DEFAULT NULL,
  `warehouse` varchar(140) DEFAULT NULL,
  `actual_qty` decimal(21,9) NOT NULL DEFAULT 0,
  `reserved_qty` decimal(21,9) NOT NULL DEFAULT 0,
  `projected_qty` decimal(21,9) NOT NULL DEFAULT 0,
  `ordered_qty` decimal(21,9) NOT NULL DEFAULT 0,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Named by naming series SO-.YYYY.-.##### (tabSeries row 'SO-<year>-').
-- status: Draft, Scheduled, In Progress, Completed, Cancelled.
-- total_amount = sum of the items' amount.
CREATE TABLE IF NOT EXISTS `tabService Order` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `naming_series` varchar(140) DEFAULT NULL,
  `customer` varchar(140) DEFAULT NULL,
  `vehicle` varchar(140) DEFAULT NULL,
  `status` varchar(140) DEFAULT 'Draft',
  `service_date` date DEFAULT NULL,
  `technician_assigned` varchar(140) DEFAULT NULL,
  `service_type` varchar(140) DEFAULT NULL,
  `estimated_cost` decimal(21,9) NOT NULL DEFAULT 0,
  `total_amount` decimal(21,9) NOT NULL DEFAULT 0,
  `description` text,
  `_user_tags` text,
  `_comments` text,
  `_assign` text,
  `_liked_by` text,
  PRIMARY KEY (`name`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Child of Service Order (parenttype 'Service Order', parentfield 'items'); amount = qty * rate.
CREATE TABLE IF NOT EXISTS `tabService Order Item` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `item_code` varchar(140) DEFAULT NULL,
  `item_name` varchar(140) DEFAULT NULL,
  `qty` decimal(21,9) NOT NULL DEFAULT 0,
  `rate` decimal(21,9) NOT NULL DEFAULT 0,
  `amount` decimal(21,9) NOT NULL DEFAULT 0,
  `parent` varchar(140) DEFAULT NULL,
  `parentfield` varchar(140) DEFAULT NULL,
  `parenttype` varchar(140) DEFAULT NULL,
  PRIMARY KEY (`name`),
  KEY `parent` (`parent`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- ---------------------------------------------------------------------------------------------
-- Permissions, as the ERP keeps them (Frappe v15: frappe/core/doctype/{docperm,custom_docperm,
-- docfield,custom_field,property_setter,user_permission,docshare}/*.json; tabSingles from
-- framework_mariadb.sql). pitstop reads them to enforce what the ERP would (proxy/perm).
-- ---------------------------------------------------------------------------------------------

-- Child of DocType (parenttype 'DocType', parentfield 'permissions'): one role's rights at one
-- permission level. `read` defaults to 1 as in docperm.json.
CREATE TABLE IF NOT EXISTS `tabDocPerm` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `role` varchar(140) DEFAULT NULL,
  `permlevel` int(11) NOT NULL DEFAULT 0,
  `if_owner` int(1) NOT NULL DEFAULT 0,
  `select` int(1) NOT NULL DEFAULT 0,
  `read` int(1) NOT NULL DEFAULT 1,
  `write` int(1) NOT NULL DEFAULT 0,
  `create` int(1) NOT NULL DEFAULT 0,
  `delete` int(1) NOT NULL DEFAULT 0,
  `submit` int(1) NOT NULL DEFAULT 0,
  `cancel` int(1) NOT NULL DEFAULT 0,
  `amend` int(1) NOT NULL DEFAULT 0,
  `report` int(1) NOT NULL DEFAULT 0,
  `export` int(1) NOT NULL DEFAULT 0,
  `import` int(1) NOT NULL DEFAULT 0,
  `share` int(1) NOT NULL DEFAULT 0,
  `print` int(1) NOT NULL DEFAULT 0,
  `email` int(1) NOT NULL DEFAULT 0,
  `parent` varchar(140) DEFAULT NULL,
  `parentfield` varchar(140) DEFAULT NULL,
  `parenttype` varchar(140) DEFAULT NULL,
  PRIMARY KEY (`name`),
  KEY `parent` (`parent`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Not a child table in v15: `parent` is a plain field naming the doctype. When a doctype has any
-- row here, these rows replace its tabDocPerm rows.
CREATE TABLE IF NOT EXISTS `tabCustom DocPerm` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `parent` varchar(140) DEFAULT NULL,
  `role` varchar(140) DEFAULT NULL,
  `permlevel` int(11) NOT NULL DEFAULT 0,
  `if_owner` int(1) NOT NULL DEFAULT 0,
  `select` int(1) NOT NULL DEFAULT 0,
  `read` int(1) NOT NULL DEFAULT 1,
  `write` int(1) NOT NULL DEFAULT 0,
  `create` int(1) NOT NULL DEFAULT 0,
  `delete` int(1) NOT NULL DEFAULT 0,
  `submit` int(1) NOT NULL DEFAULT 0,
  `cancel` int(1) NOT NULL DEFAULT 0,
  `amend` int(1) NOT NULL DEFAULT 0,
  `report` int(1) NOT NULL DEFAULT 0,
  `export` int(1) NOT NULL DEFAULT 0,
  `import` int(1) NOT NULL DEFAULT 0,
  `share` int(1) NOT NULL DEFAULT 0,
  `print` int(1) NOT NULL DEFAULT 0,
  `email` int(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`name`),
  KEY `parent` (`parent`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Child of DocType (parentfield 'fields'): only the columns permissions need.
CREATE TABLE IF NOT EXISTS `tabDocField` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `fieldname` varchar(140) DEFAULT NULL,
  `label` varchar(140) DEFAULT NULL,
  `fieldtype` varchar(140) DEFAULT 'Data',
  `options` text,
  `permlevel` int(11) NOT NULL DEFAULT 0,
  `ignore_user_permissions` int(1) NOT NULL DEFAULT 0,
  `is_virtual` int(1) NOT NULL DEFAULT 0,
  `reqd` int(1) NOT NULL DEFAULT 0,
  `parent` varchar(140) DEFAULT NULL,
  `parentfield` varchar(140) DEFAULT NULL,
  `parenttype` varchar(140) DEFAULT NULL,
  PRIMARY KEY (`name`),
  KEY `parent` (`parent`),
  KEY `label` (`label`),
  KEY `fieldtype` (`fieldtype`),
  KEY `fieldname` (`fieldname`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tabCustom Field` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `dt` varchar(140) DEFAULT NULL,
  `fieldname` varchar(140) DEFAULT NULL,
  `label` varchar(140) DEFAULT NULL,
  `fieldtype` varchar(140) DEFAULT 'Data',
  `options` text,
  `insert_after` varchar(140) DEFAULT NULL,
  `permlevel` int(11) NOT NULL DEFAULT 0,
  `ignore_user_permissions` int(1) NOT NULL DEFAULT 0,
  `is_virtual` int(1) NOT NULL DEFAULT 0,
  `reqd` int(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`name`),
  KEY `dt` (`dt`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tabProperty Setter` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `is_system_generated` int(1) NOT NULL DEFAULT 0,
  `doctype_or_field` varchar(140) DEFAULT NULL,
  `doc_type` varchar(140) DEFAULT NULL,
  `field_name` varchar(140) DEFAULT NULL,
  `row_name` varchar(140) DEFAULT NULL,
  `module` varchar(140) DEFAULT NULL,
  `property` varchar(140) DEFAULT NULL,
  `property_type` varchar(140) DEFAULT NULL,
  `value` text,
  `default_value` varchar(140) DEFAULT NULL,
  PRIMARY KEY (`name`),
  KEY `doc_type` (`doc_type`),
  KEY `field_name` (`field_name`),
  KEY `property` (`property`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- applicable_for empty: every doctype. apply_to_all_doctypes is kept for the desk; Frappe's checks
-- read applicable_for only.
CREATE TABLE IF NOT EXISTS `tabUser Permission` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `user` varchar(140) DEFAULT NULL,
  `allow` varchar(140) DEFAULT NULL,
  `for_value` varchar(140) DEFAULT NULL,
  `is_default` int(1) NOT NULL DEFAULT 0,
  `apply_to_all_doctypes` int(1) NOT NULL DEFAULT 1,
  `applicable_for` varchar(140) DEFAULT NULL,
  `hide_descendants` int(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`name`),
  KEY `user` (`user`),
  KEY `allow` (`allow`),
  KEY `for_value` (`for_value`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- `user` is NULL on a share with everyone (everyone = 1).
CREATE TABLE IF NOT EXISTS `tabDocShare` (
  `name` varchar(140) NOT NULL,
  `creation` datetime(6) DEFAULT NULL,
  `modified` datetime(6) DEFAULT NULL,
  `modified_by` varchar(140) DEFAULT NULL,
  `owner` varchar(140) DEFAULT NULL,
  `docstatus` int(1) NOT NULL DEFAULT 0,
  `idx` int(8) NOT NULL DEFAULT 0,
  `user` varchar(140) DEFAULT NULL,
  `share_doctype` varchar(140) DEFAULT NULL,
  `share_name` varchar(140) DEFAULT NULL,
  `read` int(1) NOT NULL DEFAULT 0,
  `write` int(1) NOT NULL DEFAULT 0,
  `share` int(1) NOT NULL DEFAULT 0,
  `submit` int(1) NOT NULL DEFAULT 0,
  `everyone` int(1) NOT NULL DEFAULT 0,
  `notify_by_email` int(1) NOT NULL DEFAULT 1,
  PRIMARY KEY (`name`),
  KEY `user` (`user`),
  KEY `share_doctype` (`share_doctype`),
  KEY `share_name` (`share_name`),
  KEY `everyone` (`everyone`),
  KEY `modified` (`modified`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Single doctypes' values (framework_mariadb.sql): System Settings' apply_strict_user_permissions.
CREATE TABLE IF NOT EXISTS `tabSingles` (
  `doctype` varchar(255) DEFAULT NULL,
  `field` varchar(255) DEFAULT NULL,
  `value` longtext,
  KEY `singles_doctype_field_index` (`doctype`, `field`)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
