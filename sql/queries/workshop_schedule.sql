-- GET /api/method/universal_workshop.api.get_workshop_schedule?date=2026-03-14
-- The day's service orders with customer, vehicle and technician names, by technician. Tags:
-- schedule:<date>, and the customer:, vehicle: and technician: tags of every row shown. Linked
-- names are the linked rows' own (COALESCE(c.name, …)): a link written around pitstop in another
-- spelling (`cust-00177`) still tags the answer with the name a write of that row invalidates.
-- @result . list
SELECT o.`name`, o.`service_date`, o.`status`, o.`service_type`,
       COALESCE(c.`name`, o.`customer`) AS `customer`, c.`customer_name`,
       COALESCE(v.`name`, o.`vehicle`) AS `vehicle`, v.`license_plate`, v.`make`, v.`model`,
       COALESCE(t.`name`, o.`technician_assigned`) AS `technician_assigned`, t.`technician_name`,
       o.`estimated_cost`
FROM `tabService Order` o
LEFT JOIN `tabCustomer` c ON c.`name` = o.`customer`
LEFT JOIN `tabVehicle` v ON v.`name` = o.`vehicle`
LEFT JOIN `tabTechnician` t ON t.`name` = o.`technician_assigned`
WHERE o.`service_date` = :date AND o.`status` <> 'Cancelled'
ORDER BY t.`technician_name`, o.`name`;
