-- GET /api/method/universal_workshop.api.get_service_catalog
-- The active service types, by category and name. Tags: doctype:Service Type.
-- @result . list
SELECT `name`, `service_name`, `description`, `category`, `standard_price`, `duration_minutes`
FROM `tabService Type`
WHERE `is_active` = 1
ORDER BY `category`, `service_name`;
