-- pitstop: secondary indexes for the named queries and the hot /api/resource reads.
-- Applied after sql/schema.sql; idempotent (CREATE [UNIQUE] INDEX IF NOT EXISTS). Names follow
-- Frappe's conventions: `<field>_index` / `<field1>_<field2>_index` as frappe.db.add_index names
-- them, and the column's own name for keys Frappe creates from a doctype's unique/search_index
-- fields (those are already in sql/schema.sql and are repeated here, as no-ops, so that this
-- file lists everything the queries rely on).

-- Service Order lists and lookups: orders of a customer, of a vehicle (vehicle history), by
-- status, by date (workshop schedule), by technician.
CREATE INDEX IF NOT EXISTS `customer_index` ON `tabService Order` (`customer`);
CREATE INDEX IF NOT EXISTS `vehicle_index` ON `tabService Order` (`vehicle`);
CREATE INDEX IF NOT EXISTS `status_index` ON `tabService Order` (`status`);
CREATE INDEX IF NOT EXISTS `service_date_index` ON `tabService Order` (`service_date`);
CREATE INDEX IF NOT EXISTS `technician_assigned_index` ON `tabService Order` (`technician_assigned`);
-- customer summary: a customer's orders by status (open orders, counts per status).
CREATE INDEX IF NOT EXISTS `customer_status_index` ON `tabService Order` (`customer`, `status`);
-- workshop schedule: the orders of a day / date range, filtered by status.
CREATE INDEX IF NOT EXISTS `service_date_status_index` ON `tabService Order` (`service_date`, `status`);
-- vehicle history: a vehicle's orders newest first.
CREATE INDEX IF NOT EXISTS `vehicle_service_date_index` ON `tabService Order` (`vehicle`, `service_date`);

-- Service order items: the items of an order (child rows by parent; Frappe's own KEY parent)
-- and the orders that used an item (parts usage / invalidation by item).
CREATE INDEX IF NOT EXISTS `parent` ON `tabService Order Item` (`parent`);
CREATE INDEX IF NOT EXISTS `item_code_index` ON `tabService Order Item` (`item_code`);

-- customer summary / vehicle list: the vehicles of a customer.
CREATE INDEX IF NOT EXISTS `customer_index` ON `tabVehicle` (`customer`);

-- technician skills: the skills of a technician (child rows by parent; Frappe's own KEY parent).
CREATE INDEX IF NOT EXISTS `parent` ON `tabTechnician Skill` (`parent`);

-- parts availability: the bins of an item, one per warehouse. ERPNext's own unique constraint;
-- its leading column also serves "bins of an item", so no separate item_code index.
CREATE UNIQUE INDEX IF NOT EXISTS `unique_item_warehouse` ON `tabBin` (`item_code`, `warehouse`);

-- parts availability / item details: items by item_code (ERPNext: item_code is unique).
CREATE UNIQUE INDEX IF NOT EXISTS `item_code` ON `tabItem` (`item_code`);

-- service catalogue: the active service types, by name.
CREATE INDEX IF NOT EXISTS `is_active_service_name_index` ON `tabService Type` (`is_active`, `service_name`);

-- auth, `Authorization: token <api_key>:<api_secret>`: the user of an API key
-- (Frappe's unique api_key; the secret is in __Auth, keyed by its primary key).
CREATE UNIQUE INDEX IF NOT EXISTS `api_key` ON `tabUser` (`api_key`);
-- auth, roles of a user (child rows by parent; Frappe's own KEY parent).
CREATE INDEX IF NOT EXISTS `parent` ON `tabHas Role` (`parent`);

-- auth, `sid` cookie: the session of a sid (Frappe's own KEY sid).
CREATE INDEX IF NOT EXISTS `sid` ON `tabSessions` (`sid`);

-- auth, `Authorization: Bearer <token>`: the token row of an access token (Frappe's unique key).
CREATE UNIQUE INDEX IF NOT EXISTS `access_token` ON `tabOAuth Bearer Token` (`access_token`);
