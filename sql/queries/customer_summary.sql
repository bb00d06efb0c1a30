-- GET /api/method/universal_workshop.api.get_customer_summary?customer=CUST-00001
-- The customer, its vehicles, its orders counted by status, its last service and what it spent.
-- Everything here changes only with rows that produce the tag customer:<customer> (the customer,
-- its vehicles, its service orders), which the rule puts on the cached answer.

-- @result customer one required Customer:customer
SELECT `name`, `customer_name`, `customer_type`, `customer_group`, `territory`, `mobile_no`, `email_id`, `disabled`
FROM `tabCustomer`
WHERE `name` = :customer;

-- @result vehicles many
SELECT `name`, `license_plate`, `vin`, `make`, `model`, `year`, `color`, `odometer`
FROM `tabVehicle`
WHERE `customer` = :customer
ORDER BY `name`;

-- @result orders_by_status map
SELECT `status`, COUNT(*) AS `count`
FROM `tabService Order`
WHERE `customer` = :customer
GROUP BY `status`
ORDER BY `status`;

-- @result . merge
SELECT COUNT(*) AS `total_orders`,
       MAX(CASE WHEN `status` = 'Completed' THEN `service_date` END) AS `last_service_date`,
       COALESCE(SUM(CASE WHEN `status` = 'Completed' THEN `total_amount` END), 0) AS `total_spent`,
       SUM(`status` IN ('Draft', 'Scheduled', 'In Progress')) AS `open_orders`
FROM `tabService Order`
WHERE `customer` = :customer;
